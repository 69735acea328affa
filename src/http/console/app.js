// Porteiro's admin console. Plain modules, no build step: everything goes through the public
// GraphQL API (the same one any other admin panel would use), with the session cookie and the
// CSRF header the server requires for it.

// ---------------------------------------------------------------- i18n
const TEXT = {
  "pt-BR": {
    lang: "Idioma", signout: "Sair", overview: "Visão geral", integration: "Integração Hotmart",
    catalog: "Pacotes e planos", buyers: "Compradores", events: "Eventos", rules: "Regras",
    reconcile: "Reconciliação", notifications: "Notificações", audit: "Auditoria",
    signin_title: "Entre no console", signin_how: "Peça um link de acesso no servidor e abra-o neste navegador:",
    save: "Salvar", saved: "Salvo", cancel: "Cancelar", create: "Criar", edit: "Editar", delete: "Excluir",
    webhook_url: "URL do webhook (cole na Hotmart)", copy: "Copiar", copied: "Copiado",
    waiting_test: "Aguardando o evento de teste da Hotmart…", test_received: "Evento de teste recebido às",
    last_webhook: "Último webhook", never: "nunca", hottok: "Hottok (Chave Hotmart)", basic: "Basic",
    client_id: "Client ID", client_secret: "Client Secret", environment: "Ambiente",
    reconcile_every: "Reconciliar a cada (minutos)", stored_ends: "guardado, termina em", not_set: "não definido",
    test_api: "Testar a conexão com a API", packages: "Pacotes de Produtos", plans: "Planos de Assinatura",
    name: "Nome", description: "Descrição", product_ids: "IDs de produto Hotmart", plan_ids: "IDs de plano Hotmart",
    access_days: "Dias de acesso (vazio: vitalício)", period_days: "Dias por cobrança", grace_days: "Dias de tolerância",
    target_key: "Chave para o app (opcional, ex.: curso-mensal)",
    add_id: "digite um ID e Enter", new_package: "Novo pacote", new_plan: "Novo plano", lifetime: "vitalício",
    days: "dias", confirm_force: "acesso. Excluir mesmo assim e revogar esse acesso?",
    search: "Buscar pelo começo do e-mail, código de assinante ou transação", status: "Status", end: "Termina", source: "Origem",
    explain: "Por quê?", grant: "Conceder acesso", revoke: "Revogar", reason: "Motivo", until: "Até (opcional)",
    target: "Pacote ou plano", no_access: "Sem acesso", type: "Tipo", email: "E-mail", since: "Desde", to: "Até",
    received: "Recebido", decision: "Decisão", rule_version: "Versão da regra", replay: "Reprocessar",
    replay_unmapped: "Reprocessar todos os não mapeados", replay_failed: "Reprocessar todos com falha",
    payload: "Conteúdo recebido", filter: "Filtrar", all: "todos", error: "Erro", queued: "na fila",
    event_type: "Tipo de evento", versions: "Versões", active: "ativa", activate: "Ativar",
    save_draft: "Salvar rascunho", draft: "rascunho", backtest: "Testar contra o histórico",
    bt_title: "Teste contra o histórico", bt_running: "Testando", bt_of: "de", bt_events: "eventos avaliados",
    bt_decisions: "decisões mudariam", bt_gained: "ganham acesso", bt_lost: "perdem acesso", bt_suspended: "ficam suspensos",
    bt_end_moved: "mudam de data de fim", bt_changed: "mudam de outra forma", bt_none: "Ativar esta versão não muda o acesso de ninguém.",
    bt_change: "Mudança", bt_before: "Hoje", bt_after: "Depois de ativar", bt_truncated: "A lista para em 10.000; as contagens cobrem todos.",
    bt_GAINED: "ganha acesso", bt_LOST: "perde acesso", bt_SUSPENDED: "fica suspenso", bt_END_MOVED: "muda a data de fim", bt_CHANGED: "muda",
    bt_cancel: "Parar o teste", bt_failed: "O teste não terminou",
    act_confirm: "Ativar a versão {v}? Os eventos deste tipo já guardados serão decididos de novo por ela.",
    act_confirm_bt: "O último teste dela: {g} ganham acesso, {l} perdem, {s} ficam suspensos, {e} mudam de data de fim.",
    act_confirm_none: "Ela ainda não foi testada contra o histórico.",
    dk_grant: "liberar", dk_revoke: "revogar", dk_suspend: "suspender", dk_ignore: "ignorar",
    cases_title: "Casos de teste", cases_help: "Ao salvar, a versão passa por estes casos (o mesmo formato de `porteiro rules test`); se um falhar, ela não é salva.",
    cases_failed: "Um caso de teste falhou; a versão não foi salva:", case_one: "caso", case_other: "casos",
        shadow: "sombra", shadow_on: "Pôr em sombra", shadow_off: "Tirar da sombra", shadow_title: "Versão em sombra",
    shadow_help: "Decide cada evento novo ao lado da versão ativa, sem aplicar nada; aqui, onde as duas discordam.",
    shadow_counts: "{a} concordaram · {d} discordaram", shadow_promote: "Promover (ativar esta versão)",
    shadow_active: "A ativa decidiu", shadow_would: "A sombra decidiria", shadow_event: "Evento",
    shadow_promote_confirm: "Ativar a versão em sombra {v}? Os eventos deste tipo já guardados serão decididos de novo por ela.", until_short: "até",
    simulate: "Simular", simulate_help: "Escolha um evento guardado ou cole um payload: a decisão aparece sem efeito.",
    pick_event: "Evento guardado", paste_payload: "Ou cole um payload", diff: "Diferença para a ativa",
    default_script: "padrão", dry_run: "Simular (sem aplicar)", apply: "Aplicar", progress: "Progresso",
    drift: "Diferenças", endpoints: "Destinos", deliveries: "Entregas", url: "URL", secret_once: "Segredo de assinatura (mostrado só agora):",
    send_test: "Enviar teste", resend: "Reenviar", attempts: "Tentativas", next_try: "Próxima tentativa",
    code: "Código", latency: "Latência", actor: "Quem", action: "Ação", when: "Quando",
    backlog: "Na fila", failed: "Com falha", unmapped: "Não mapeados", events_hour: "Eventos por hora (24 h)",
    changes_day: "Acessos por dia (14 dias)", granted: "concedidos", revoked: "revogados", expired: "expirados",
    viewer_only: "Você entrou como leitor: só administradores alteram.", more: "Mais",
    kind_PACKAGE: "pacote", kind_PLAN: "plano", subscriber_codes: "Código de assinante",
    audit_target: "Alvo", actor_rules: "regras", actor_timer: "relógio", role_admin: "admin", role_viewer: "leitor",
    audit_forced: "exclusão forçada: revogou o acesso de", buyer_word_one: "comprador", buyer_word_other: "compradores",
    "act_access.change": "Acesso alterado", "act_access.granted": "Acesso concedido", "act_access.revoked": "Acesso revogado",
    "act_access.expired": "Acesso expirado", "act_api_key.create": "Chave de API criada", "act_api_key.revoke": "Chave de API revogada",
    "act_buyer.erase": "Dados apagados (LGPD)", "act_buyer.email_change": "E-mail trocado", "act_access.move": "Acesso movido", "act_integration.save": "Integração salva", "act_notification.resend": "Notificação reenviada",
    "act_notification_endpoint.create": "Destino criado", "act_notification_endpoint.delete": "Destino excluído",
    "act_notification_endpoint.rotate_secret": "Segredo do destino trocado", "act_notification_endpoint.update": "Destino alterado",
    "act_package.create": "Pacote criado", "act_package.update": "Pacote alterado", "act_package.delete": "Pacote excluído",
    "act_plan.create": "Plano criado", "act_plan.update": "Plano alterado", "act_plan.delete": "Plano excluído",
    "act_reconcile.apply": "Reconciliação aplicada", "act_reconcile.cancel": "Reconciliação cancelada",
    "act_rule.activate": "Regra ativada", "act_rule.save": "Regra salva", "act_subscription.cancel": "Assinatura cancelada",
    "act_rule.draft": "Rascunho de regra salvo", "act_rule.shadow": "Regra em sombra alterada", "act_rule.backtest": "Regra testada contra o histórico",
    "act_rule.backtest_cancel": "Teste de regra parado", "act_api_key.rotate": "Chave de API trocada",
    "act_subscription.reactivate": "Assinatura reativada", "act_webhook.replay": "Evento reprocessado", "act_webhook.replay_all": "Eventos reprocessados",
    already_linked: "já está ligado a", details: "Detalhes técnicos",
    reason_test: "Evento de teste da Hotmart: registrado, nunca dá acesso", reason_no_access: "{1} não muda acesso",
    reason_no_email: "{1} sem e-mail de comprador válido", reason_no_transaction: "{1} sem transação legível",
    reason_no_source: "o evento não tem transação nem código de assinante",
    reason_unmapped: "o produto Hotmart {1} não está ligado a nenhum pacote ou plano: ligue-o e reprocesse este evento",
    reason_unlinked: "o produto Hotmart {1} não está mais ligado a nenhum pacote ou plano: ligue-o e reprocesse este evento",
    reason_no_rule: "sem regra para {1}", reason_rule_failed: "a regra {1} v{2} falhou (veja os detalhes técnicos)",
    reason_unreadable: "conteúdo ilegível: guardado para revisão e reprocessamento",
    reason_erased: "o comprador desta compra foi apagado a pedido (LGPD): os eventos dela não são aplicados",
    reason_retention: "o conteúdo foi esvaziado pela retenção: não pode ser decidido de novo",
    reason_payment_refused: "pagamento recusado: nenhum acesso é dado ou tirado",
    price: "Valor", holders_title: "Quem tem acesso agora", holders_active: "Com acesso", holders_suspended: "Suspensos (disputa)",
    subj_entitlement: "acesso", subj_package: "pacote", subj_plan: "plano", subj_buyer: "comprador", subj_api_key: "chave de API",
    subj_notification_endpoint: "destino", subj_subscription: "assinatura", subj_reconciliation_run: "reconciliação",
    subj_hotmart_integration: "integração Hotmart", subj_webhook_events: "eventos",
    conn_OK: "a Hotmart aceitou as credenciais", conn_BAD_CREDENTIALS: "a Hotmart recusou as credenciais: confira Basic, Client ID e Client Secret, e se não são de sandbox em produção (ou o contrário)",
    conn_FORBIDDEN: "a Hotmart diz que esta conta não pode fazer isto", conn_RATE_LIMITED: "a Hotmart limitou as chamadas: tente de novo em alguns minutos",
    conn_UNREACHABLE: "não foi possível falar com a Hotmart (rede ou DNS do servidor)", conn_HOTMART_ERROR: "a Hotmart respondeu com um erro (veja os detalhes no log)",
    conn_NOT_FOUND: "a Hotmart não encontrou o recurso", env_production: "Produção", env_sandbox: "Sandbox",
    reason_slip_expired: "boleto vencido sem pagamento: nenhum acesso foi dado",
    reason_attempts: "não pôde ser aplicado após {1} tentativas: reprocesse quando corrigido", rule_error: "O script tem um erro.", rule_error_at: "O script tem um erro na linha", column: "coluna",
    err_BAD_USER_INPUT: "Verifique os campos destacados.", err_NOT_FOUND: "Não encontrado: talvez já tenha sido excluído.",
    err_FORBIDDEN: "Só administradores podem fazer isto.", err_UNAUTHENTICATED: "Sua sessão terminou: entre de novo.",
    err_CONFLICT: "Isto conflita com o que já existe.", err_MISCONFIGURED: "O servidor não está configurado para isto: veja o log (porteiro doctor ajuda).",
    err_INTERNAL: "Erro interno: tente de novo; se continuar, veja o log.", err_UNAVAILABLE: "O banco de dados não respondeu: tente de novo em instantes.",
    err_UPSTREAM: "A Hotmart recusou ou não respondeu.",
    field_invalid: "Valor inválido.", field_email: "E-mail inválido.", field_reason: "Diga o motivo.", field_name: "Dê um nome.",
    field_hottok: "Hottok inválida: copie-a de novo da Hotmart.", field_basic: "O Basic deve ser o base64 de client_id:client_secret.",
    field_clientId: "O Client ID é um UUID (copie da Hotmart).", field_clientSecret: "O Client Secret é um UUID (copie da Hotmart).",
    field_hotmartProductIds: "ID de produto inválido ou já ligado a outro pacote ou plano.", field_url: "URL inválida: use https://.",
    field_source: "O script tem um erro.", field_reconcileEveryMinutes: "Entre 15 minutos e 7 dias.",
    buyer_one: "comprador tem", buyer_other: "compradores têm",
    confirm_delete: "Excluir", close: "Fechar",
    dec_grant_lifetime: "Concede acesso vitalício", dec_grant_until: "Concede acesso até", dec_revoke: "Revoga o acesso",
    dec_revoke_at: "Revoga o acesso em", dec_suspend: "Suspende o acesso", dec_ignore: "Ignorado",
    source_manual: "Cortesia do admin", source_subscription: "Assinatura", source_purchase: "Compra",
    first_day: "Primeiros passos", arrived_at: "Chegou às", chart_empty: "Nada neste período ainda.",
    refused_NOT_CONFIGURED: "mas a Hottok ainda não foi salva: salve-a e envie o teste de novo",
    refused_WRONG_HOTTOK: "mas a Hottok não confere com a salva: copie-a de novo da Hotmart",
    refused_MISSING_HOTTOK: "mas veio sem Hottok",
    url_not_public: "A Hotmart só entrega em um endereço HTTPS público; este não é: configure PORTEIRO_PUBLIC_URL com o endereço do seu proxy (README, Deploy).",
    step_hottok: "Salve a Hottok (na Hotmart: Ferramentas › Webhook › a chave do seu produto) em Integração Hotmart.",
    step_url: "Cole a URL do webhook na Hotmart (versão 2.0.0).",
    step_test: "Na Hotmart, clique em \u201cEnviar teste\u201d.",
    step_catalog: "Crie um pacote ou plano com o ID do produto Hotmart.",
    step_sale: "A primeira venda real chega e dá acesso.",
    revoke_all: "Revogar todo o acesso a", revoke_all_confirm: "Isto encerra todas estas origens de",
    source_manual_by: "Cortesia de", on_day: "em", period_weekly: "semanal", period_monthly: "mensal",
    period_quarterly: "trimestral", period_half: "semestral", period_yearly: "anual", period_every: "a cada {1} dias",
    move_title: "Trocar o e-mail", move_to: "Novo e-mail", move_button: "Mover o acesso",
    move_help: "Para quem comprou com outro e-mail: todo o acesso deste comprador passa para o novo e-mail. O app é avisado (revogado para o antigo, concedido para o novo) e eventos da Hotmart que ainda chegarem com o e-mail antigo não o trazem de volta.",
    move_confirm: "Mover todo o acesso de", moved: "Acesso movido para o novo e-mail.", field_newEmail: "E-mail inválido ou igual ao atual.",
    eff_PAID: "pago", eff_MOVE: "troca de plano", eff_END_BY: "termina até", eff_SUSPEND: "suspende", eff_TERMINATE: "encerra",
    eff_ADMIN_GRANT: "concessão do admin", eff_ADMIN_REVOKE: "revogação do admin", eff_ADMIN_MOVE: "movido pelo admin para outro e-mail",
    personal_data: "Dados pessoais (LGPD)",
    personal_help: "A pedido do titular: baixe tudo o que o Porteiro guarda sobre esta pessoa, ou apague. Apagar encerra o acesso agora (o app é avisado), troca o e-mail por um pseudônimo e mascara nome e dados pessoais em todos os registros. Não pode ser desfeito.",
    export_data: "Baixar dados (JSON)", erase_data: "Apagar dados desta pessoa",
    erase_reason: "Motivo do apagamento (ex.: pedido do titular e a data)",
    erase_confirm: "Apagar definitivamente os dados de", erased_as: "Apagado. Agora aparece como",
  },
  en: {
    lang: "Language", signout: "Sign out", overview: "Overview", integration: "Hotmart integration",
    catalog: "Packages and plans", buyers: "Buyers", events: "Events", rules: "Rules",
    reconcile: "Reconciliation", notifications: "Notifications", audit: "Audit log",
    signin_title: "Sign in to the console", signin_how: "Ask the server for a sign-in link and open it in this browser:",
    save: "Save", saved: "Saved", cancel: "Cancel", create: "Create", edit: "Edit", delete: "Delete",
    webhook_url: "Webhook URL (paste it into Hotmart)", copy: "Copy", copied: "Copied",
    waiting_test: "Waiting for Hotmart's test event…", test_received: "Test event received at",
    last_webhook: "Last webhook", never: "never", hottok: "Hottok (Hotmart key)", basic: "Basic",
    client_id: "Client ID", client_secret: "Client Secret", environment: "Environment",
    reconcile_every: "Reconcile every (minutes)", stored_ends: "stored, ends in", not_set: "not set",
    test_api: "Test the API connection", packages: "Product packages", plans: "Subscription plans",
    name: "Name", description: "Description", product_ids: "Hotmart product IDs", plan_ids: "Hotmart plan IDs",
    access_days: "Access days (empty: lifetime)", period_days: "Days per charge", grace_days: "Grace days",
    target_key: "Key for apps (optional, e.g. monthly-course)",
    add_id: "type an ID and press Enter", new_package: "New package", new_plan: "New plan", lifetime: "lifetime",
    days: "days", confirm_force: "access. Delete anyway and revoke that access?",
    search: "Search by the start of the e-mail, a subscriber code or a transaction", status: "Status", end: "Ends", source: "Source",
    explain: "Why?", grant: "Grant access", revoke: "Revoke", reason: "Reason", until: "Until (optional)",
    target: "Package or plan", no_access: "No access", type: "Type", email: "E-mail", since: "Since", to: "Until",
    received: "Received", decision: "Decision", rule_version: "Rule version", replay: "Replay",
    replay_unmapped: "Replay all unmapped", replay_failed: "Replay all failed",
    kind_PACKAGE: "package", kind_PLAN: "plan", subscriber_codes: "Subscriber code",
    audit_target: "Target", actor_rules: "rules", actor_timer: "timer", role_admin: "admin", role_viewer: "viewer",
    audit_forced: "forced delete: revoked the access of", buyer_word_one: "buyer", buyer_word_other: "buyers",
    "act_access.change": "Access changed", "act_access.granted": "Access granted", "act_access.revoked": "Access revoked",
    "act_access.expired": "Access expired", "act_api_key.create": "API key created", "act_api_key.revoke": "API key revoked",
    "act_buyer.erase": "Data erased (LGPD)", "act_buyer.email_change": "E-mail changed", "act_access.move": "Access moved", "act_integration.save": "Integration saved", "act_notification.resend": "Notification resent",
    "act_notification_endpoint.create": "Endpoint created", "act_notification_endpoint.delete": "Endpoint deleted",
    "act_notification_endpoint.rotate_secret": "Endpoint secret rotated", "act_notification_endpoint.update": "Endpoint changed",
    "act_package.create": "Package created", "act_package.update": "Package changed", "act_package.delete": "Package deleted",
    "act_plan.create": "Plan created", "act_plan.update": "Plan changed", "act_plan.delete": "Plan deleted",
    "act_reconcile.apply": "Reconciliation applied", "act_reconcile.cancel": "Reconciliation cancelled",
    "act_rule.activate": "Rule activated", "act_rule.save": "Rule saved", "act_subscription.cancel": "Subscription cancelled",
    "act_rule.draft": "Rule draft saved", "act_rule.shadow": "Rule shadow changed", "act_rule.backtest": "Rule tested against history",
    "act_rule.backtest_cancel": "Rule test stopped", "act_api_key.rotate": "API key rotated",
    "act_subscription.reactivate": "Subscription reactivated", "act_webhook.replay": "Event replayed", "act_webhook.replay_all": "Events replayed",
    already_linked: "is already linked to", details: "Technical details",
    reason_test: "Hotmart test event: recorded, never grants access", reason_no_access: "{1} does not change access",
    reason_no_email: "{1} carries no valid buyer e-mail", reason_no_transaction: "{1} carries no readable transaction",
    reason_no_source: "the event has neither a transaction nor a subscriber code",
    reason_unmapped: "Hotmart product {1} is not linked to any package or plan: link it, then replay this event",
    reason_unlinked: "Hotmart product {1} is no longer linked to any package or plan: link it, then replay this event",
    reason_no_rule: "no rule for {1}", reason_rule_failed: "rule {1} v{2} failed (see the technical details)",
    reason_unreadable: "unreadable payload: kept for review and replay",
    reason_erased: "the buyer of this purchase was erased on request (LGPD): its events are not applied",
    reason_retention: "its body was emptied by the retention: it cannot be decided again",
    reason_payment_refused: "payment refused: no access is given or taken",
    price: "Price", holders_title: "Who has access now", holders_active: "With access", holders_suspended: "Suspended (dispute)",
    subj_entitlement: "access", subj_package: "package", subj_plan: "plan", subj_buyer: "buyer", subj_api_key: "API key",
    subj_notification_endpoint: "endpoint", subj_subscription: "subscription", subj_reconciliation_run: "reconciliation",
    subj_hotmart_integration: "Hotmart integration", subj_webhook_events: "events",
    conn_OK: "Hotmart accepted the credentials", env_production: "Production", env_sandbox: "Sandbox",
    reason_slip_expired: "payment slip expired unpaid: no access was given",
    reason_attempts: "could not be applied after {1} attempts: replay it once fixed", rule_error: "The script has an error.", rule_error_at: "The script has an error on line", column: "column",
    err_BAD_USER_INPUT: "Check the highlighted fields.", err_NOT_FOUND: "Not found: it may have been deleted.",
    err_FORBIDDEN: "Only admins can do this.", err_UNAUTHENTICATED: "Your session ended: sign in again.",
    err_CONFLICT: "This conflicts with what exists.", err_MISCONFIGURED: "The server is not configured for this: see its log (porteiro doctor helps).",
    err_INTERNAL: "Internal error: try again; if it persists, see the log.", err_UNAVAILABLE: "The database did not answer: try again in a moment.",
    err_UPSTREAM: "Hotmart refused or did not answer.",
    field_invalid: "Invalid value.", field_email: "Invalid e-mail.", field_reason: "Say why.", field_name: "Give it a name.",
    field_hottok: "Invalid Hottok: copy it again from Hotmart.", field_basic: "Basic must be the base64 of client_id:client_secret.",
    field_clientId: "The Client ID is a UUID (copy it from Hotmart).", field_clientSecret: "The Client Secret is a UUID (copy it from Hotmart).",
    field_hotmartProductIds: "Invalid product ID, or one linked to another package or plan.", field_url: "Invalid URL: use https://.",
    field_source: "The script has an error.", field_reconcileEveryMinutes: "Between 15 minutes and 7 days.",
    buyer_one: "buyer holds", buyer_other: "buyers hold",
    confirm_delete: "Delete", close: "Close",
    dec_grant_lifetime: "Grants lifetime access", dec_grant_until: "Grants access until", dec_revoke: "Revokes access",
    dec_revoke_at: "Revokes access at", dec_suspend: "Suspends access", dec_ignore: "Ignored",
    source_manual: "Admin courtesy", source_subscription: "Subscription", source_purchase: "Purchase",
    first_day: "First steps", arrived_at: "Arrived at", chart_empty: "Nothing in this period yet.",
    refused_NOT_CONFIGURED: "but no Hottok is saved yet: save it and send the test again",
    refused_WRONG_HOTTOK: "but the Hottok does not match the saved one: copy it again from Hotmart",
    refused_MISSING_HOTTOK: "but it came without a Hottok",
    url_not_public: "Hotmart only delivers to a public HTTPS address, and this is not one: set PORTEIRO_PUBLIC_URL to your proxy's address (README, Deploy).",
    step_hottok: "Save the Hottok (in Hotmart: Tools › Webhook, your product's key) under Hotmart integration.",
    step_url: "Paste the webhook URL into Hotmart (version 2.0.0).",
    step_test: "In Hotmart, press \u201cSend test\u201d.",
    step_catalog: "Create a package or plan with the Hotmart product ID.",
    step_sale: "The first real sale arrives and gives access.",
    revoke_all: "Revoke all access to", revoke_all_confirm: "This ends every one of these sources of",
    source_manual_by: "Courtesy from", on_day: "on", period_weekly: "weekly", period_monthly: "monthly",
    period_quarterly: "quarterly", period_half: "half-yearly", period_yearly: "yearly", period_every: "every {1} days",
    move_title: "Change the e-mail", move_to: "New e-mail", move_button: "Move the access",
    move_help: "For someone who bought with another e-mail: all of this buyer's access moves to the new e-mail. The app is told (revoked for the old one, granted for the new one), and Hotmart events that still arrive under the old e-mail do not bring it back.",
    move_confirm: "Move all access of", moved: "Access moved to the new e-mail.", field_newEmail: "Invalid e-mail, or the same as the current one.",
    eff_PAID: "paid", eff_MOVE: "plan switch", eff_END_BY: "ends by", eff_SUSPEND: "suspends", eff_TERMINATE: "ends",
    eff_ADMIN_GRANT: "admin grant", eff_ADMIN_REVOKE: "admin revoke", eff_ADMIN_MOVE: "moved by an admin to another e-mail",
    personal_data: "Personal data (LGPD)",
    personal_help: "On the person's request: download everything Porteiro holds about them, or erase it. Erasing ends their access now (the app is told), replaces the e-mail by a pseudonym and masks their name and personal fields in every record. It cannot be undone.",
    export_data: "Download data (JSON)", erase_data: "Erase this person's data",
    erase_reason: "Why (e.g. the person's request and its date)",
    erase_confirm: "Erase for good the data of", erased_as: "Erased. Now shown as",
    payload: "Stored payload", filter: "Filter", all: "all", error: "Error", queued: "queued",
    event_type: "Event type", versions: "Versions", active: "active", activate: "Activate",
    save_draft: "Save draft", draft: "draft", backtest: "Test against history",
    bt_title: "Test against history", bt_running: "Testing", bt_of: "of", bt_events: "events evaluated",
    bt_decisions: "decisions would change", bt_gained: "gain access", bt_lost: "lose access", bt_suspended: "are suspended",
    bt_end_moved: "get another end date", bt_changed: "change otherwise", bt_none: "Activating this version changes nobody's access.",
    bt_change: "Change", bt_before: "Now", bt_after: "After activating", bt_truncated: "The list stops at 10,000; the counts cover all.",
    bt_GAINED: "gains access", bt_LOST: "loses access", bt_SUSPENDED: "is suspended", bt_END_MOVED: "end date moves", bt_CHANGED: "changes",
    bt_cancel: "Stop the test", bt_failed: "The test did not finish",
    act_confirm: "Activate version {v}? The stored events of this type will be decided again by it.",
    act_confirm_bt: "Its last test: {g} gain access, {l} lose it, {s} are suspended, {e} get another end date.",
    act_confirm_none: "It has not been tested against history yet.",
    dk_grant: "grant", dk_revoke: "revoke", dk_suspend: "suspend", dk_ignore: "ignore",
    cases_title: "Test cases", cases_help: "On saving, the version runs these cases (the `porteiro rules test` format); if one fails, it is not saved.",
    cases_failed: "A test case failed; the version was not saved:", case_one: "case", case_other: "cases",
        shadow: "shadow", shadow_on: "Put in shadow", shadow_off: "Take out of shadow", shadow_title: "Version in shadow",
    shadow_help: "Decides every new event beside the active version, applying nothing; here, where the two disagree.",
    shadow_counts: "{a} agreed · {d} disagreed", shadow_promote: "Promote (activate this version)",
    shadow_active: "The active one decided", shadow_would: "The shadow would decide", shadow_event: "Event",
    shadow_promote_confirm: "Activate version {v}, in shadow? The stored events of this type will be decided again by it.", until_short: "until",
    simulate: "Simulate", simulate_help: "Pick a stored event or paste a payload: see the decision, without effect.",
    pick_event: "Stored event", paste_payload: "Or paste a payload", diff: "Difference from the active one",
    default_script: "default", dry_run: "Dry run", apply: "Apply", progress: "Progress",
    drift: "Drift", endpoints: "Endpoints", deliveries: "Deliveries", url: "URL", secret_once: "Signing secret (shown only now):",
    send_test: "Send test", resend: "Re-send", attempts: "Attempts", next_try: "Next try",
    code: "Code", latency: "Latency", actor: "Who", action: "Action", when: "When",
    backlog: "Backlog", failed: "Failed", unmapped: "Unmapped", events_hour: "Events per hour (24 h)",
    changes_day: "Access per day (14 days)", granted: "granted", revoked: "revoked", expired: "expired",
    viewer_only: "You signed in as a viewer: only admins change things.", more: "More",
  },
};
let lang = localStorage.getItem("porteiro.lang") || "pt-BR";
const t = (k) => (TEXT[lang] && TEXT[lang][k]) || TEXT.en[k] || k;

// ---------------------------------------------------------------- DOM helpers
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    // Through the CSSOM: the page's CSP forbids inline style attributes.
    else if (k === "style") el.style.cssText = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}
const $ = (sel, root = document) => root.querySelector(sel);
function toast(msg) {
  const d = h("div", {}, msg);
  $("#toast").append(d);
  setTimeout(() => d.remove(), 4000);
}
// dd/mm/aaaa HH:mm in the browser's time zone (pt-BR), the locale's order otherwise.
const fmt = (iso) => (iso ? new Date(iso).toLocaleString(lang, { day: "2-digit", month: "2-digit", year: "numeric", hour: "2-digit", minute: "2-digit" }) : "—");
// "1 comprador", "2 compradores": the word by the count's plural category.
const plural = (n, forms) => `${n} ${forms[new Intl.PluralRules(lang).select(n)] || forms.other}`;
// A rule's decision (the API's "grant until …", "revoke", "ignore: …") in the page's language.
function decisionText(d) {
  if (!d) return "—";
  let m;
  if (d === "grant") return t("dec_grant_lifetime");
  if ((m = /^grant until (.+)$/.exec(d))) return `${t("dec_grant_until")} ${fmt(m[1])}`;
  if (d === "revoke") return t("dec_revoke");
  if ((m = /^revoke at (.+)$/.exec(d))) return `${t("dec_revoke_at")} ${fmt(m[1])}`;
  if (d === "suspend") return t("dec_suspend");
  if (d === "ignore") return t("dec_ignore");
  if ((m = /^ignore: (.*)$/.exec(d))) return h("span", {}, `${t("dec_ignore")}: `, reasonText(m[1]));
  return d;
}
const hhmm = (iso) => new Date(iso).toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit" });
// Statuses as the API spells them (class, and the tests' selectors) shown in the page's language.
const STATUS = {
  "pt-BR": {
    ACTIVE: "Ativo", SUSPENDED: "Suspenso", REVOKED: "Revogado", EXPIRED: "Expirado",
    processed: "Processado", pending: "Na fila", failed: "Com falha", ignored: "Ignorado", unmapped: "Não mapeado",
    test: "Teste", PENDING: "Pendente", DELIVERED: "Entregue", DEAD: "Desistido", running: "Em andamento",
    succeeded: "Concluída", queued: "Na fila", cancelled: "Cancelada",
  },
  en: {
    ACTIVE: "Active", SUSPENDED: "Suspended", REVOKED: "Revoked", EXPIRED: "Expired",
    processed: "Processed", pending: "Pending", failed: "Failed", ignored: "Ignored", unmapped: "Unmapped",
    test: "Test", PENDING: "Pending", DELIVERED: "Delivered", DEAD: "Given up", running: "Running",
    succeeded: "Succeeded", queued: "Queued", cancelled: "Cancelled",
  },
};
// Hotmart's event types in the seller's words (the code stays in the tooltip).
const EVENT_NAMES = {
  "pt-BR": {
    PURCHASE_APPROVED: "Compra aprovada", PURCHASE_COMPLETE: "Compra concluída", PURCHASE_CANCELED: "Compra cancelada",
    PURCHASE_REFUNDED: "Reembolso", PURCHASE_CHARGEBACK: "Chargeback", PURCHASE_PROTEST: "Pedido de reembolso",
    PURCHASE_DELAYED: "Pagamento atrasado", PURCHASE_EXPIRED: "Compra expirada", PURCHASE_BILLET_PRINTED: "Boleto impresso",
    PURCHASE_OUT_OF_SHOPPING_CART: "Abandono de carrinho", SUBSCRIPTION_CANCELLATION: "Assinatura cancelada",
    SWITCH_PLAN: "Troca de plano", UPDATE_SUBSCRIPTION_CHARGE_DATE: "Nova data de cobrança",
    CLUB_FIRST_ACCESS: "Primeiro acesso (Club)", CLUB_MODULE_COMPLETED: "Módulo concluído (Club)",
    ADMIN_GRANT: "Concessão do admin", ADMIN_REVOKE: "Revogação do admin", ADMIN_MOVE: "Troca de e-mail pelo admin", UNREADABLE: "Ilegível",
  },
  en: {
    PURCHASE_APPROVED: "Purchase approved", PURCHASE_COMPLETE: "Purchase complete", PURCHASE_CANCELED: "Purchase cancelled",
    PURCHASE_REFUNDED: "Refund", PURCHASE_CHARGEBACK: "Chargeback", PURCHASE_PROTEST: "Refund request",
    PURCHASE_DELAYED: "Payment late", PURCHASE_EXPIRED: "Purchase expired", PURCHASE_BILLET_PRINTED: "Boleto printed",
    PURCHASE_OUT_OF_SHOPPING_CART: "Cart abandoned", SUBSCRIPTION_CANCELLATION: "Subscription cancelled",
    SWITCH_PLAN: "Plan switch", UPDATE_SUBSCRIPTION_CHARGE_DATE: "New charge date",
    CLUB_FIRST_ACCESS: "First access (Club)", CLUB_MODULE_COMPLETED: "Module completed (Club)",
    ADMIN_GRANT: "Admin grant", ADMIN_REVOKE: "Admin revoke", ADMIN_MOVE: "E-mail changed by an admin", UNREADABLE: "Unreadable",
  },
};
const eventName = (code) => h("span", { title: code, "data-event-type": code }, (EVENT_NAMES[lang] && EVENT_NAMES[lang][code]) || code);
// Why an event stopped where it did, in the page's language: the worker's reasons have fixed
// shapes. A reason a rule script wrote is the script author's words, shown as written.
const REASONS = [
  [/^Hotmart test event: recorded, never grants access$/, "reason_test"],
  [/^(\w+) does not change access$/, "reason_no_access"],
  [/^(\w+) carries no valid buyer e-mail$/, "reason_no_email"],
  [/^(\w+) carries no readable transaction$/, "reason_no_transaction"],
  [/^event has neither a transaction nor a subscriber code$/, "reason_no_source"],
  [/^Hotmart product (\S+) is not linked to any package or plan/, "reason_unmapped"],
  [/^Hotmart product (\S+) is no longer linked/, "reason_unlinked"],
  [/^no rule for (\w+)$/, "reason_no_rule"],
  [/^rule (\w+) v(\d+) failed: /, "reason_rule_failed"],
  [/^cannot read the (?:payload|delivery): /, "reason_unreadable"],
  [/^the buyer of this purchase was erased/, "reason_erased"],
  [/^its body was emptied by the retention/, "reason_retention"],
  [/^could not be applied after (\d+) attempts/, "reason_attempts"],
  // The default rule scripts' own words (rules/*.rhai); a seller's scripts speak for themselves.
  [/^payment refused: no access is given or taken$/, "reason_payment_refused"],
  [/^payment slip expired unpaid: no access was given$/, "reason_slip_expired"],
];
function reasonText(why) {
  for (const [re, key] of REASONS) {
    const m = re.exec(why);
    if (m) return h("span", { title: why }, m.slice(1).reduce((text, v, i) => text.replace(`{${i + 1}}`, v), t(key)));
  }
  return h("span", { "data-raw": "", title: why }, why);
}
// A source in a seller's words: "Compra HP… em 04/12", "Assinatura SB… (mensal)",
// "Cortesia de ana@loja — motivo".
const dayMonth = (iso) => new Date(iso).toLocaleDateString(lang, { day: "2-digit", month: "2-digit" });
function periodWord(days) {
  const named = { 7: "period_weekly", 30: "period_monthly", 31: "period_monthly", 90: "period_quarterly", 180: "period_half", 365: "period_yearly" };
  return named[days] ? t(named[days]) : t("period_every").replace("{1}", days);
}
function sourceLabel(a) {
  const source = a.source;
  if (source.startsWith("manual:")) {
    const c = a.courtesy;
    return c ? `${t("source_manual_by")} ${actorText(c.grantedBy)} — ${c.reason}` : t("source_manual");
  }
  if (source.startsWith("sub:")) {
    const p = a.plan?.periodDays;
    return `${t("source_subscription")} ${source.slice(4)}${p ? ` (${periodWord(p)})` : ""}`;
  }
  const code = source.replace(/^txn:/, "");
  return `${t("source_purchase")} ${code}${a.grantedAt ? ` ${t("on_day")} ${dayMonth(a.grantedAt)}` : ""}`;
}
const badge = (s) => h("span", { class: `badge ${s}`, "data-status": s }, (STATUS[lang] && STATUS[lang][s]) || s);

// ---------------------------------------------------------------- GraphQL
// The server's errors come with a code (and, for input, the fields at fault): the page says
// them in its own language; the server's own words stay in `detail` (shown folded, for support).
class GqlError extends Error {
  constructor(errors) {
    const code = errors[0]?.extensions?.code;
    const detail = errors.map((e) => e.message).join("; ");
    super(t(`err_${code}`) !== `err_${code}` ? t(`err_${code}`) : detail);
    this.detail = detail;
    this.errors = errors;
    this.code = code;
    this.fields = errors.flatMap((e) => e.extensions?.fields || []);
  }
}
// A field's error in the page's language (the server's words in the tooltip).
const fieldError = (f) => {
  const key = `field_${f.field}`;
  return t(key) !== key ? t(key) : t("field_invalid");
};
async function gql(query, variables = {}) {
  const res = await fetch("/graphql", {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json", "x-porteiro-console": "1" },
    body: JSON.stringify({ query, variables }),
  });
  const body = await res.json().catch(() => ({ errors: [{ message: `HTTP ${res.status}` }] }));
  if (body.errors && body.errors.length) throw new GqlError(body.errors);
  return body.data;
}
/// Shows an error under the form fields it names, or as a toast.
function showErrors(form, err) {
  form.querySelectorAll(".error").forEach((e) => e.remove());
  form.querySelectorAll("[aria-invalid]").forEach((e) => e.removeAttribute("aria-invalid"));
  let placed = false;
  for (const f of err.fields || []) {
    const input = form.querySelector(`[name="${f.field}"]`);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      const msg = h("div", { class: "error", id: `err-${f.field}`, role: "alert", title: f.message }, fieldError(f));
      input.after(msg);
      input.setAttribute("aria-describedby", msg.id);
      placed = true;
    }
  }
  if (!placed) {
    const box = h("div", { class: "error", role: "alert" }, err.message,
      err.detail && err.detail !== err.message ? h("details", {}, h("summary", {}, t("details")), err.detail) : null);
    form.append(box);
  }
}

let me = null;
const isAdmin = () => me && me.role === "admin";

// ---------------------------------------------------------------- pages
const PAGES = ["overview", "integration", "catalog", "buyers", "events", "rules", "reconcile", "notifications", "audit"];
const RENDER = {};
let timers = [];

function nav(current) {
  const n = $("#nav");
  n.replaceChildren(
    ...PAGES.map((p) => h("a", { href: `#/${p}`, id: `nav-${p}`, "aria-current": p === current ? "page" : null }, t(p))),
  );
}

// On a phone tables become cards (app.css): each cell is labelled with its column's heading.
function labelCells(root) {
  for (const table of root.querySelectorAll("table")) {
    const heads = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
    if (!heads.some(Boolean)) continue;
    for (const tr of table.querySelectorAll("tbody tr")) {
      [...tr.children].forEach((td, i) => { if (heads[i] && !td.dataset.label) td.dataset.label = heads[i]; });
    }
  }
}
new MutationObserver(() => labelCells(document.querySelector("main") || document)).observe(document.documentElement, { childList: true, subtree: true });
async function route() {
  timers.forEach(clearInterval);
  timers = [];
  const page = (location.hash.replace(/^#\//, "").split("?")[0] || "overview");
  const name = PAGES.includes(page) ? page : "overview";
  nav(name);
  const main = $("#main");
  main.replaceChildren(h("h1", { id: "title" }, t(name)));
  if (me && !isAdmin()) main.append(h("p", { class: "muted" }, t("viewer_only")));
  try {
    await RENDER[name](main);
  } catch (e) {
    main.append(h("p", { class: "error", role: "alert" }, e.message));
  }
}

// ---- overview
// A slot's label in the browser's time zone: hours ("2026-12-05T17", UTC) and the browser's
// own days ("2026-12-05", local).
function slotLabel(s) {
  if (s.length > 10) return new Date(`${s}:00:00Z`).toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit" });
  return new Date(`${s}T12:00:00`).toLocaleDateString(lang, { day: "2-digit", month: "2-digit" });
}
// A date as "YYYY-MM-DD" in the browser's time zone.
const localDay = (d) => `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
// Hourly buckets (UTC hours) summed into the browser's own days.
function byLocalDay(hourly) {
  const out = new Map();
  for (const b of hourly) {
    const key = `${localDay(new Date(`${b.at}:00:00Z`))}|${b.kind}`;
    const o = out.get(key) || { at: key.split("|")[0], kind: b.kind, count: 0 };
    o.count += b.count;
    out.set(key, o);
  }
  return [...out.values()];
}
const kindLabel = (k) => (STATUS[lang] && STATUS[lang][k]) || t(k) || k;

function bars(id, buckets, keys, colors, slots) {
  const totals = slots.map((s) => keys.reduce((n, k) => n + (buckets.find((b) => b.at === s && b.kind === k)?.count || 0), 0));
  if (totals.every((n) => n === 0)) return h("p", { class: "muted empty-chart", id }, t("chart_empty"));
  const W = 720, H = 160, pad = 34;
  const max = Math.max(1, ...totals);
  const w = (W - pad) / slots.length;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H + 18}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("id", id);
  svg.setAttribute("role", "img");
  const text = (x, y, content, anchor = "start") => {
    const tx = document.createElementNS(svg.namespaceURI, "text");
    Object.entries({ x, y, "text-anchor": anchor }).forEach(([a, v]) => tx.setAttribute(a, v));
    tx.textContent = content;
    svg.append(tx);
  };
  // The count axis: zero and the tallest bar's total.
  text(pad - 6, H, "0", "end");
  text(pad - 6, 16, String(max), "end");
  slots.forEach((s, i) => {
    let y = H;
    keys.forEach((k, j) => {
      const c = buckets.find((b) => b.at === s && b.kind === k)?.count || 0;
      if (!c) return;
      const hgt = (c / max) * (H - 10);
      y -= hgt;
      const r = document.createElementNS(svg.namespaceURI, "rect");
      Object.entries({ x: pad + i * w + 1, y, width: Math.max(1, w - 2), height: hgt, fill: colors[j] }).forEach(([a, v]) => r.setAttribute(a, v));
      const title = document.createElementNS(svg.namespaceURI, "title");
      title.textContent = `${slotLabel(s)} ${kindLabel(k)}: ${c}`;
      r.append(title);
      svg.append(r);
    });
    if (i % Math.ceil(slots.length / 8) === 0) text(pad + i * w, H + 15, slotLabel(s));
  });
  svg.setAttribute("aria-label", slots.map((s, i) => `${slotLabel(s)}: ${totals[i]}`).join(", "));
  return svg;
}
const legend = (keys, colors, labels) =>
  h("div", { class: "legend" }, keys.map((k, i) => h("span", {}, h("i", { style: `background:${colors[i]}` }), labels ? labels[i] : kindLabel(k))));

// The first day, step by step, until every step is done.
async function firstDay(main) {
  const q = await gql(`{ hotmartIntegration { webhookUrl lastTestEventAt lastRejectedAt lastRejectedReason hottok { set } }
    productPackages { hotmartProductIds } subscriptionPlans { hotmartProductIds }
    webhookEvents(status: "processed", first: 1) { nodes { id } } }`);
  const i = q.hotmartIntegration;
  const linked = [...q.productPackages, ...q.subscriptionPlans].some((p) => p.hotmartProductIds.length > 0);
  const steps = [
    ["hottok", i.hottok.set, t("step_hottok")],
    ["url", publicUrl(i.webhookUrl), publicUrl(i.webhookUrl) ? t("step_url") : t("url_not_public")],
    ["test", !!i.lastTestEventAt, h("span", {}, t("step_test"), " ", testStatus(i))],
    ["catalog", linked, t("step_catalog")],
    ["sale", q.webhookEvents.nodes.length > 0, t("step_sale")],
  ];
  if (steps.every(([, done]) => done)) return;
  main.append(h("section", { class: "card", id: "first-day" }, h("h2", {}, t("first_day")),
    h("ol", {}, steps.map(([id, done, text]) => h("li", { "data-step": id, "data-done": done ? "yes" : "no", class: done ? "ok" : "" },
      done ? "✓ " : "○ ", text)))));
}

RENDER.overview = async (main) => {
  await firstDay(main);
  const d = (await gql(`{ overview { backlog failed unmapped lastWebhookAt generatedAt
      eventsPerHour { at kind count } changesPerHour { at kind count }
      holders { target { kind id name } active suspended } } }`)).overview;
  main.append(
    h("div", { class: "stats" },
      h("div", { class: "card stat" }, t("backlog"), h("b", { id: "stat-backlog" }, d.backlog)),
      h("div", { class: "card stat" }, h("a", { href: "#/events?status=failed" }, t("failed")), h("b", { id: "stat-failed", class: d.failed ? "warn" : "" }, d.failed)),
      h("div", { class: "card stat" }, h("a", { href: "#/events?status=unmapped" }, t("unmapped")), h("b", {}, d.unmapped)),
      h("div", { class: "card stat" }, t("last_webhook"), h("b", { style: "font-size:16px" }, d.lastWebhookAt ? fmt(d.lastWebhookAt) : t("never")))),
  );
  const now = new Date(d.generatedAt);
  const hours = [...Array(24)].map((_, i) => new Date(now - (23 - i) * 3600e3).toISOString().slice(0, 13));
  // The last 14 days in the browser's time zone (a day may last 23 or 25 hours: step by date).
  const days = [...Array(14)].map((_, i) => localDay(new Date(now.getFullYear(), now.getMonth(), now.getDate() - 13 + i, 12)));
  const ek = ["processed", "ignored", "test", "unmapped", "failed", "pending"];
  const ec = ["#16a34a", "#94a3b8", "#60a5fa", "#eab308", "#dc2626", "#f97316"];
  const ck = ["access.granted", "access.revoked", "access.expired"];
  const cc = ["#16a34a", "#dc2626", "#94a3b8"];
  main.append(
    h("section", { class: "card" }, h("h2", {}, t("events_hour")), bars("chart-events", d.eventsPerHour, ek, ec, hours), legend(ek, ec)),
    h("section", { class: "card" }, h("h2", {}, t("changes_day")), bars("chart-changes", byLocalDay(d.changesPerHour), ck, cc, days),
      legend(ck, cc, [t("granted"), t("revoked"), t("expired")])),
  );
  // Who holds what now: every package and plan, most held first.
  if (d.holders.length) main.append(h("section", { class: "card", id: "holders" }, h("h2", {}, t("holders_title")),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, t("target")), h("th", { class: "num" }, t("holders_active")), h("th", { class: "num" }, t("holders_suspended")))),
      h("tbody", {}, d.holders.map((x) => h("tr", { "data-target": `${x.target.kind}:${x.target.id}` },
        h("td", { "data-label": t("target") }, `${x.target.name} (${t(`kind_${x.target.kind}`)})`),
        h("td", { class: "num", "data-label": t("holders_active") }, new Intl.NumberFormat(lang).format(x.active)),
        h("td", { class: "num", "data-label": t("holders_suspended") }, new Intl.NumberFormat(lang).format(x.suspended))))))));
};

// ---- integration
RENDER.integration = async (main) => {
  const q = `{ hotmartIntegration { webhookUrl environment lastWebhookAt lastTestEventAt reconcileEveryMinutes
      hottok { set last4 } basic { set last4 } clientId { set last4 } clientSecret { set last4 } } }`;
  const d = (await gql(q)).hotmartIntegration;
  const url = h("input", { type: "text", id: "webhook-url", readonly: true, value: d.webhookUrl, "aria-label": t("webhook_url") });
  const copy = h("button", { type: "button", id: "copy-webhook", class: "shrink", onclick: async () => {
    try { await navigator.clipboard.writeText(url.value); } catch { url.select(); document.execCommand("copy"); }
    copy.textContent = t("copied");
  } }, t("copy"));
  const live = h("p", { id: "test-status", role: "status" });
  const showLive = (x) => live.replaceChildren(testStatus(x));
  showLive(d);
  timers.push(setInterval(async () => {
    showLive((await gql("{ hotmartIntegration { lastTestEventAt lastRejectedAt lastRejectedReason } }")).hotmartIntegration);
  }, 3000));
  // The Hottok first: a test sent before it is saved is refused, and the page says so.
  const urlCard = h("section", { class: "card" },
    h("label", { for: "webhook-url" }, t("webhook_url")), h("div", { class: "row" }, url, copy),
    publicUrl(d.webhookUrl) ? null : h("p", { class: "warn", id: "url-warning" }, t("url_not_public")), live);

  const secret = (name, label, s) =>
    h("div", {}, h("label", { for: `f-${name}` }, label),
      h("input", { type: "password", id: `f-${name}`, name, autocomplete: "off",
        placeholder: s.set ? `${t("stored_ends")} ${s.last4}` : t("not_set") }));
  const env = h("select", { id: "f-environment", name: "environment" },
    ["PRODUCTION", "SANDBOX"].map((e) => h("option", { value: e, selected: d.environment === e }, t(`env_${e.toLowerCase()}`))));
  const every = h("input", { type: "number", id: "f-reconcile", name: "reconcileEveryMinutes", min: 0, value: d.reconcileEveryMinutes ?? "" });
  const form = h("form", { id: "integration-form", class: "card", novalidate: true },
    secret("hottok", t("hottok"), d.hottok), secret("basic", t("basic"), d.basic),
    secret("clientId", t("client_id"), d.clientId), secret("clientSecret", t("client_secret"), d.clientSecret),
    h("div", { class: "row" }, h("div", {}, h("label", { for: "f-environment" }, t("environment")), env),
      h("div", {}, h("label", { for: "f-reconcile" }, t("reconcile_every")), every)),
    h("p", {}, h("button", { type: "submit", class: "primary", id: "save-integration", disabled: !isAdmin() }, t("save")), " ",
      h("button", { type: "button", id: "test-api", disabled: !isAdmin(), onclick: async (ev) => {
        ev.target.disabled = true;
        try {
          const r = (await gql("mutation { testHotmartConnection { ok code environment message } }")).testHotmartConnection;
          const said = t(`conn_${r.code}`) !== `conn_${r.code}` ? t(`conn_${r.code}`) : r.message;
          toast(`${r.ok ? "✓" : "✗"} ${t(`env_${r.environment}`)}: ${said}`);
        } catch (e) { toast(e.message); } finally { ev.target.disabled = false; }
      } }, t("test_api"))),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = {};
    for (const k of ["hottok", "basic", "clientId", "clientSecret"]) {
      const v = form.elements[k].value.trim();
      if (v) input[k] = v;
    }
    input.environment = env.value;
    if (every.value !== "") input.reconcileEveryMinutes = Number(every.value);
    try {
      await gql(`mutation($i: SaveHotmartIntegrationInput!) { saveHotmartIntegration(input: $i) { webhookUrl } }`, { i: input });
      toast(t("saved"));
      route();
    } catch (e) { showErrors(form, e); }
  });
  main.append(form, urlCard);
};

// Whether Hotmart can reach a URL: HTTPS on a public host.
function publicUrl(u) {
  try {
    const { protocol, hostname } = new URL(u);
    const h4 = hostname.split(".").map(Number);
    const privateV4 = h4.length === 4 && h4.every((n) => n >= 0 && n < 256) &&
      (h4[0] === 10 || h4[0] === 127 || (h4[0] === 192 && h4[1] === 168) || (h4[0] === 172 && h4[1] >= 16 && h4[1] < 32) || h4[0] === 0);
    const local = hostname === "localhost" || hostname.endsWith(".local") || hostname.endsWith(".test") || hostname.startsWith("[");
    return protocol === "https:" && !privateV4 && !local;
  } catch { return false; }
}

// What happened to Hotmart's test: received, refused (and why), or still awaited.
function testStatus(x) {
  const test = x.lastTestEventAt && new Date(x.lastTestEventAt);
  const refused = x.lastRejectedAt && new Date(x.lastRejectedAt);
  if (refused && (!test || refused > test)) {
    return h("span", { class: "warn", id: "test-refused" },
      `${t("arrived_at")} ${hhmm(x.lastRejectedAt)}, ${t(`refused_${x.lastRejectedReason}`)}`);
  }
  if (test) return h("span", { class: "ok" }, `${t("test_received")} ${hhmm(x.lastTestEventAt)}`);
  return h("span", { class: "muted" }, t("waiting_test"));
}

// ---- catalog
function chipsInput(name, values) {
  const list = [...values];
  const box = h("div", { class: "chips", "data-name": name });
  const input = h("input", { type: "text", name, "aria-label": t(name === "planIds" ? "plan_ids" : "product_ids"), placeholder: t("add_id") });
  const draw = () => {
    box.querySelectorAll(".chip").forEach((c) => c.remove());
    list.forEach((v, i) => box.insertBefore(h("span", { class: "chip", "data-id": v }, v,
      h("button", { type: "button", "aria-label": `remove ${v}`, onclick: () => { list.splice(i, 1); draw(); } }, "×")), input));
  };
  const add = () => {
    for (const v of input.value.split(/[\s,]+/).map((x) => x.trim()).filter(Boolean)) if (!list.includes(v)) list.push(v);
    input.value = "";
    draw();
  };
  input.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === ",") { e.preventDefault(); add(); } });
  input.addEventListener("blur", add);
  box.append(input);
  draw();
  box.values = () => { add(); return list; };
  return box;
}
/// A CONFLICT names the ID that is taken and who holds it: mark that chip.
function markConflict(form, err) {
  const m = /Hotmart (?:product|plan) (\S+) is already linked to (.+?);/.exec(err.detail || err.message);
  if (!m) return false;
  const chip = form.querySelector(`.chip[data-id="${CSS.escape(m[1])}"]`);
  if (!chip) return false;
  chip.classList.add("bad");
  chip.setAttribute("title", err.detail || err.message);
  chip.parentElement.after(h("div", { class: "error", role: "alert", id: "conflict" }, `${m[1]} ${t("already_linked")} ${m[2]}`));
  return true;
}
function targetForm(kind, row, done) {
  const isPlan = kind === "plan";
  const name = h("input", { type: "text", name: "name", id: `${kind}-name`, value: row?.name || "" });
  const desc = h("input", { type: "text", name: "description", id: `${kind}-description`, value: row?.description || "" });
  // What the producer's app uses instead of the id (the same on staging and production).
  const key = h("input", { type: "text", name: "key", id: `${kind}-key`, value: row?.key || "", autocapitalize: "none", spellcheck: "false" });
  const ids = chipsInput("hotmartProductIds", row?.hotmartProductIds || []);
  const planIds = isPlan ? chipsInput("planIds", row?.hotmartPlanIds || []) : null;
  const days = isPlan
    ? h("div", { class: "row" },
      h("div", {}, h("label", { for: `${kind}-period` }, t("period_days")), h("input", { type: "number", name: "periodDays", id: `${kind}-period`, value: row?.periodDays ?? 30 })),
      h("div", {}, h("label", { for: `${kind}-grace` }, t("grace_days")), h("input", { type: "number", name: "graceDays", id: `${kind}-grace`, value: row?.graceDays ?? 3 })))
    : h("div", {}, h("label", { for: `${kind}-days` }, t("access_days")), h("input", { type: "number", name: "accessDays", id: `${kind}-days`, value: row?.accessDays ?? "" }));
  const form = h("form", { class: "card", id: `${kind}-form` },
    h("label", { for: `${kind}-name` }, t("name")), name, h("label", { for: `${kind}-description` }, t("description")), desc,
    h("label", { for: `${kind}-key` }, t("target_key")), key,
    h("label", {}, t("product_ids")), ids, isPlan ? [h("label", {}, t("plan_ids")), planIds] : null, days,
    h("p", {}, h("button", { type: "submit", class: "primary", id: `${kind}-save` }, row ? t("save") : t("create")), " ",
      h("button", { type: "button", onclick: () => form.remove() }, t("cancel"))));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    form.querySelectorAll(".error").forEach((e) => e.remove());
    const input = { name: name.value, description: desc.value, key: key.value.trim() || null, hotmartProductIds: ids.values() };
    const num = (n) => (form.elements[n].value === "" ? null : Number(form.elements[n].value));
    if (isPlan) Object.assign(input, { hotmartPlanIds: planIds.values(), periodDays: num("periodDays"), graceDays: num("graceDays") });
    else input.accessDays = num("accessDays");
    const T = isPlan ? "SubscriptionPlan" : "ProductPackage";
    try {
      if (row) await gql(`mutation($id: ID!, $i: Update${T}Input!) { update${T}(id: $id, input: $i) { id } }`, { id: row.id, i: input });
      else await gql(`mutation($i: Create${T}Input!) { create${T}(input: $i) { id } }`, { i: input });
      toast(t("saved"));
      done();
    } catch (e) {
      if (!(e.code === "CONFLICT" && markConflict(form, e))) showErrors(form, e);
    }
  });
  return form;
}
async function deleteTarget(kind, row) {
  const T = kind === "plan" ? "SubscriptionPlan" : "ProductPackage";
  const m = `mutation($id: ID!, $f: Boolean!) { delete${T}(id: $id, force: $f) { deleted revokedAccess } }`;
  // Every delete asks first; one that would end buyers' access asks again, with their count.
  if (!confirm(`${t("confirm_delete")} ${row.name}?`)) return;
  try {
    await gql(m, { id: row.id, f: false });
  } catch (e) {
    const n = /^(\d+) buyer/.exec(e.detail || e.message);
    if (e.code !== "CONFLICT" || !n) throw e;
    if (!confirm(`${row.name}: ${plural(Number(n[1]), { one: t("buyer_one"), other: t("buyer_other") })} ${t("confirm_force")}`)) return;
    await gql(m, { id: row.id, f: true });
  }
  toast(t("saved"));
  route();
}
RENDER.catalog = async (main) => {
  const d = await gql(`{ productPackages { id name key description accessDays lifetime hotmartProductIds }
    subscriptionPlans { id name key description periodDays graceDays hotmartProductIds hotmartPlanIds } }`);
  for (const [kind, rows, title, add] of [["package", d.productPackages, "packages", "new_package"], ["plan", d.subscriptionPlans, "plans", "new_plan"]]) {
    const sec = h("section", { class: "card", id: `${kind}s` }, h("h2", {}, t(title)));
    const table = h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, t("name")), h("th", {}, t("product_ids")), h("th", {}, kind === "plan" ? t("period_days") : t("access_days")), h("th", {}))),
      h("tbody", {}, rows.map((r) => h("tr", { "data-name": r.name },
        h("td", {}, r.name), h("td", {}, h("div", {}, [...r.hotmartProductIds, ...(r.hotmartPlanIds || [])].map((id) => h("span", { class: "chip" }, id)))),
        h("td", {}, kind === "plan" ? `${r.periodDays} ${t("days")}` : r.lifetime ? t("lifetime") : `${r.accessDays} ${t("days")}`),
        h("td", {}, isAdmin() ? [h("button", { type: "button", onclick: (ev) => ev.target.closest("tr").after(h("tr", {}, h("td", { colspan: 4 }, targetForm(kind, r, route)))) }, t("edit")), " ",
          h("button", { type: "button", class: "danger", onclick: () => deleteTarget(kind, r).catch((e) => toast(e.message)) }, t("delete"))] : null)))));
    sec.append(table);
    if (isAdmin()) sec.append(h("p", {}, h("button", { type: "button", id: `new-${kind}`, onclick: (ev) => ev.target.parentElement.after(targetForm(kind, null, route)) }, t(add))));
    main.append(sec);
  }
};

// ---- buyers
const ACCESS = "id status active grantedAt expiresAt source reason target { kind id name } plan { periodDays } courtesy { grantedBy reason }";
async function buyerDetail(box, email) {
  const d = await gql(`query($e: String!) { buyer(email: $e) { email name subscriberCodes access { ${ACCESS} } }
    productPackages { id name } subscriptionPlans { id name } }`, { e: email });
  const b = d.buyer;
  box.replaceChildren(h("h2", { id: "buyer-email" }, b ? `${b.email} ${b.name ? `(${b.name})` : ""}` : email));
  if (b && b.subscriberCodes.length) box.append(h("p", { class: "muted" }, `${t("subscriber_codes")}: ${b.subscriberCodes.join(", ")}`));
  const rows = b ? b.access : [];
  const explain = h("div", { id: "explain" });
  box.append(rows.length ? h("table", { id: "access-table" },
    h("thead", {}, h("tr", {}, h("th", {}, t("target")), h("th", {}, t("status")), h("th", {}, t("end")), h("th", {}, t("source")), h("th", {}))),
    h("tbody", {}, rows.map((a) => h("tr", {},
      h("td", {}, a.target ? `${a.target.name} (${t(`kind_${a.target.kind}`)})` : "—"), h("td", {}, badge(a.status)),
      h("td", {}, a.expiresAt ? fmt(a.expiresAt) : t("lifetime")), h("td", { title: a.source, "data-source": a.source }, sourceLabel(a)),
      h("td", {}, a.target ? [h("button", { type: "button", onclick: () => explainAccess(explain, email, a.target) }, t("explain")), " ",
        // This row's button ends only this row's source (a sale, a subscription, a courtesy).
        isAdmin() && a.active ? h("button", { type: "button", class: "danger revoke-one", onclick: async () => {
          const reason = prompt(t("reason"));
          if (!reason) return;
          try {
            await gql(`mutation($e: String!, $t: TargetInput!, $r: String!, $s: String) { revokeAccess(email: $e, target: $t, reason: $r, source: $s) }`,
              { e: email, t: { kind: a.target.kind, id: a.target.id }, r: reason, s: a.source });
            buyerDetail(box, email);
          } catch (e) { toast(e.message); }
        } }, t("revoke")) : null] : null))))) : h("p", { class: "muted" }, t("no_access")), explain);
  // Ending everything a target gives is its own button, whose confirmation lists what ends.
  const live = new Map();
  for (const a of rows) if (a.active && a.target) {
    const k = `${a.target.kind}:${a.target.id}`;
    if (!live.has(k)) live.set(k, { target: a.target, sources: [] });
    live.get(k).sources.push(a.source);
  }
  if (isAdmin()) for (const { target, sources } of live.values()) if (sources.length > 1) {
    box.append(h("p", {}, h("button", { type: "button", class: "danger revoke-all", onclick: async () => {
      if (!confirm(`${t("revoke_all_confirm")} ${target.name}:\n${sources.join("\n")}`)) return;
      const reason = prompt(t("reason"));
      if (!reason) return;
      try {
        await gql(`mutation($e: String!, $t: TargetInput!, $r: String!) { revokeAccess(email: $e, target: $t, reason: $r) }`,
          { e: email, t: { kind: target.kind, id: target.id }, r: reason });
        buyerDetail(box, email);
      } catch (e) { toast(e.message); }
    } }, `${t("revoke_all")} ${target.name}`)));
  }
  if (!isAdmin()) return;
  const opts = [...d.productPackages.map((p) => ["PACKAGE", p]), ...d.subscriptionPlans.map((p) => ["PLAN", p])];
  const sel = h("select", { name: "target", id: "grant-target" }, opts.map(([k, p]) => h("option", { value: `${k}:${p.id}` }, `${p.name} (${t(`kind_${k}`)})`)));
  const until = h("input", { type: "datetime-local", name: "expiresAt", id: "grant-until" });
  const reason = h("input", { type: "text", name: "reason", id: "grant-reason" });
  const form = h("form", { id: "grant-form" }, h("h2", {}, t("grant")),
    h("div", { class: "row" }, h("div", {}, h("label", { for: "grant-target" }, t("target")), sel),
      h("div", {}, h("label", { for: "grant-until" }, t("until")), until), h("div", {}, h("label", { for: "grant-reason" }, t("reason")), reason),
      h("button", { type: "submit", class: "primary shrink" }, t("grant"))));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const [kind, id] = sel.value.split(":");
    try {
      await gql(`mutation($e: String!, $t: TargetInput!, $x: DateTime, $r: String!) { grantAccess(email: $e, target: $t, expiresAt: $x, reason: $r) { status } }`,
        { e: email, t: { kind, id }, x: until.value ? new Date(until.value).toISOString() : null, r: reason.value });
      buyerDetail(box, email);
    } catch (e) { showErrors(form, e); }
  });
  box.append(form);
  if (b && rows.length) box.append(changeEmail(box, b.email, rows));
  if (b) box.append(personalData(box, b.email));
}
// "Comprei com outro e-mail": everything moves to the new e-mail; the confirmation lists it.
function changeEmail(box, email, rows) {
  const to = h("input", { type: "email", name: "newEmail", id: "move-email", autocomplete: "off" });
  const reason = h("input", { type: "text", name: "reason", id: "move-reason" });
  const form = h("form", { id: "move-form" }, h("h2", {}, t("move_title")), h("p", { class: "muted" }, t("move_help")),
    h("div", { class: "row" }, h("div", {}, h("label", { for: "move-email" }, t("move_to")), to),
      h("div", {}, h("label", { for: "move-reason" }, t("reason")), reason),
      h("button", { type: "submit", class: "primary shrink", id: "move-submit" }, t("move_button"))));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    form.querySelectorAll(".error").forEach((e) => e.remove());
    const what = rows.map((a) => `• ${a.target ? a.target.name : "—"}: ${sourceLabel(a)}`).join("\n");
    if (!confirm(`${t("move_confirm")} ${email} → ${to.value.trim()}:\n${what}`)) return;
    try {
      await gql(`mutation($e: String!, $n: String!, $r: String!) { changeBuyerEmail(email: $e, newEmail: $n, reason: $r) { id } }`,
        { e: email, n: to.value.trim(), r: reason.value });
      toast(t("moved"));
      buyerDetail(box, to.value.trim());
    } catch (e) { showErrors(form, e); }
  });
  return form;
}
// The LGPD's requests: an export to hand to the person, an erasure that says what it does.
function personalData(box, email) {
  const out = h("p", { id: "personal-result", role: "status" });
  const download = h("button", { type: "button", id: "export-data", onclick: async () => {
    try {
      const d = await gql(`query($e: String!) { exportBuyerData(email: $e) }`, { e: email });
      const blob = new Blob([JSON.stringify(d.exportBuyerData, null, 2)], { type: "application/json" });
      const a = h("a", { href: URL.createObjectURL(blob), download: `dados-${email}.json` });
      document.body.append(a); a.click(); a.remove();
    } catch (e) { toast(e.message); }
  } }, t("export_data"));
  const reason = h("input", { type: "text", name: "erase-reason", id: "erase-reason" });
  const erase = h("button", { type: "submit", class: "danger shrink", id: "erase-data" }, t("erase_data"));
  const form = h("form", { id: "erase-form" },
    h("div", { class: "row" }, h("div", {}, h("label", { for: "erase-reason" }, t("erase_reason")), reason), erase));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!confirm(`${t("erase_confirm")} ${email}?`)) return;
    try {
      const d = await gql(`mutation($e: String!, $r: String!) { eraseBuyer(email: $e, reason: $r) { pseudonym revoked } }`,
        { e: email, r: reason.value });
      box.replaceChildren(h("p", { id: "personal-result", role: "status" }, `${t("erased_as")} ${d.eraseBuyer.pseudonym}`));
    } catch (e) { showErrors(form, e); }
  });
  return h("section", { id: "personal-data" }, h("h2", {}, t("personal_data")), h("p", { class: "muted" }, t("personal_help")),
    download, form, out);
}
async function explainAccess(box, email, target) {
  const d = await gql(`query($e: String!, $t: TargetInput!) { explainAccess(email: $e, target: $t) {
      steps { source eventId eventType occurredAt effect until decision ruleVersion } } }`, { e: email, t: { kind: target.kind, id: target.id } });
  box.replaceChildren(h("h2", {}, `${t("explain")} ${target.name}`), h("ol", { id: "explain-steps" },
    d.explainAccess.steps.map((s) => h("li", {}, h("b", {}, eventName(s.eventType)), ` ${fmt(s.occurredAt)} → ${t(`eff_${s.effect}`)}`,
      s.until ? ` (${t("end")}: ${fmt(s.until)})` : "", " — ", decisionText(s.decision), s.ruleVersion !== null ? ` [v${s.ruleVersion}]` : ""))));
}
RENDER.buyers = async (main) => {
  const q = h("input", { type: "search", id: "buyer-search", name: "search", placeholder: t("search"), "aria-label": t("search") });
  const list = h("div", { id: "buyer-list" });
  const detail = h("section", { class: "card", id: "buyer-detail", hidden: true });
  const search = async () => {
    const v = q.value.trim();
    detail.hidden = true;
    if (v && !v.includes("@") && /^[A-Za-z0-9]{4,}$/.test(v)) {
      const d = await gql(`query($c: String!) { buyer(subscriberCode: $c) { email } }`, { c: v });
      if (d.buyer) { detail.hidden = false; return buyerDetail(detail, d.buyer.email); }
    }
    const d = await gql(`query($s: String) { buyers(search: $s, first: 50) { nodes { email name access { status } } } }`, { s: v || null });
    list.replaceChildren(h("table", {}, h("tbody", {}, d.buyers.nodes.map((b) => h("tr", { class: "click", tabindex: 0, "data-email": b.email,
      onclick: () => { detail.hidden = false; buyerDetail(detail, b.email); },
      onkeydown: (e) => { if (e.key === "Enter") { detail.hidden = false; buyerDetail(detail, b.email); } } },
      h("td", {}, b.email), h("td", {}, b.name), h("td", {}, b.access.map((a) => badge(a.status))))))));
  };
  const form = h("form", { class: "row", onsubmit: (e) => { e.preventDefault(); search().catch((x) => toast(x.message)); } }, q,
    h("button", { type: "submit", class: "shrink" }, t("filter")));
  main.append(h("section", { class: "card" }, form, list), detail);
  const pre = new URLSearchParams(location.hash.split("?")[1] || "").get("email");
  if (pre) { q.value = pre; }
  await search();
};

// ---- events
RENDER.events = async (main) => {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const status = h("select", { name: "status", id: "ev-status" }, ["", "pending", "processed", "ignored", "unmapped", "failed", "test"].map((s) =>
    h("option", { value: s, selected: params.get("status") === s }, s ? kindLabel(s) : t("all"))));
  const type = h("input", { type: "text", name: "eventType", id: "ev-type", placeholder: "PURCHASE_APPROVED" });
  const email = h("input", { type: "text", name: "email", id: "ev-email" });
  const since = h("input", { type: "date", name: "since", id: "ev-since" });
  const until = h("input", { type: "date", name: "until", id: "ev-until" });
  const table = h("div", { id: "events-table" });
  const detail = h("section", { class: "card", id: "event-detail", hidden: true });
  const load = async () => {
    const v = { s: status.value || null, t: type.value.trim() || null, e: email.value.trim() || null,
      a: since.value ? new Date(since.value).toISOString() : null, b: until.value ? new Date(new Date(until.value).getTime() + 86400e3).toISOString() : null };
    const d = await gql(`query($s: String, $t: String, $e: String, $a: DateTime, $b: DateTime) { webhookEvents(status: $s, eventType: $t, email: $e, since: $a, until: $b, first: 100) {
      nodes { id eventId eventType status email receivedAt decision ruleVersion error } } }`, v);
    table.replaceChildren(h("table", {}, h("thead", {}, h("tr", {}, [t("received"), t("type"), t("status"), t("email"), t("decision")].map((x) => h("th", {}, x)))),
      h("tbody", {}, d.webhookEvents.nodes.map((e) => h("tr", { class: "click", tabindex: 0, "data-event": e.eventId, onclick: () => showEvent(detail, e.id, load) },
        h("td", {}, fmt(e.receivedAt)), h("td", {}, eventName(e.eventType)), h("td", {}, badge(e.status)), h("td", {}, e.email || "—"), h("td", {}, e.decision ? decisionText(e.decision) : e.error ? reasonText(e.error) : "—"))))));
  };
  const form = h("form", { class: "row", onsubmit: (e) => { e.preventDefault(); load(); } },
    h("div", {}, h("label", { for: "ev-status" }, t("status")), status), h("div", {}, h("label", { for: "ev-type" }, t("type")), type),
    h("div", {}, h("label", { for: "ev-email" }, t("email")), email), h("div", {}, h("label", { for: "ev-since" }, t("since")), since),
    h("div", {}, h("label", { for: "ev-until" }, t("to")), until), h("button", { type: "submit", class: "shrink", id: "ev-filter" }, t("filter")));
  const replayAll = (s) => async () => {
    try { const n = (await gql(`mutation($s: String!) { replayWebhookEvents(status: $s) }`, { s })).replayWebhookEvents; toast(`${n} ${t("queued")}`); load(); } catch (e) { toast(e.message); }
  };
  main.append(h("section", { class: "card" }, form,
    isAdmin() ? h("p", {}, h("button", { type: "button", onclick: replayAll("unmapped") }, t("replay_unmapped")), " ", h("button", { type: "button", onclick: replayAll("failed") }, t("replay_failed"))) : null,
    table), detail);
  await load();
  timers.push(setInterval(() => { if (detail.hidden) load().catch(() => {}); }, 5000));
  // A link to one stored event (from a rule's shadow) opens it.
  if (params.get("id")) showEvent(detail, params.get("id"), load).catch((e) => toast(e.message));
};
async function showEvent(box, id, reload) {
  const e = (await gql(`query($id: ID!) { webhookEvent(id: $id) { id eventId eventType status format email transaction source receivedAt occurredAt processedAt decision ruleVersion error attempts rawPayload } }`, { id })).webhookEvent;
  let pretty = e.rawPayload, price = null;
  try {
    const body = JSON.parse(e.rawPayload);
    pretty = JSON.stringify(body, null, 2);
    // What the buyer paid, when the payload says it (v2 purchases), in the reader's format.
    const p = body?.data?.purchase?.price;
    if (p && typeof p.value === "number" && /^[A-Z]{3}$/.test(p.currency_value || "")) {
      price = new Intl.NumberFormat(lang, { style: "currency", currency: p.currency_value }).format(p.value);
    }
  } catch { /* a form post stays as it came */ }
  box.hidden = false;
  box.replaceChildren(
    h("p", {}, h("button", { type: "button", id: "close-event", class: "shrink", onclick: () => { box.hidden = true; box.replaceChildren(); } }, t("close"))),
    h("h2", {}, eventName(e.eventType), ` · ${e.eventId}`),
    h("p", {}, badge(e.status), ` ${t("decision")}: `, decisionText(e.decision), ` · ${t("rule_version")}: ${e.ruleVersion ?? "—"}`, e.error ? h("div", { class: "error" }, reasonText(e.error)) : null),
    price ? h("p", { id: "event-price" }, `${t("price")}: ${price}`) : null,
    h("p", { class: "muted" }, `${t("received")} ${fmt(e.receivedAt)} · ${e.email || ""} ${e.transaction || ""} ${e.source || ""}`),
    isAdmin() ? h("p", {}, h("button", { type: "button", id: "replay-one", onclick: async () => {
      try { await gql(`mutation($id: ID!) { replayWebhookEvent(id: $id) { status } }`, { id }); toast(t("queued")); reload(); } catch (x) { toast(x.message); }
    } }, t("replay"))) : null,
    h("h2", {}, t("payload")), h("pre", { id: "event-payload", tabindex: 0, "aria-label": t("payload") }, pretty));
  box.scrollIntoView({ block: "nearest" });
}

// ---- rules
const KEYWORDS = /\b(let|const|if|else|fn|return|true|false|while|loop|for|in|break|continue|switch|throw|try|catch|import|export|as|private|this|is_def_var)\b/g;
function highlight(src, badLine) {
  const esc = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  return src.split("\n").map((line, i) => {
    let out = "";
    const re = /(\/\/.*$)|("(?:[^"\\]|\\.)*"|`(?:[^`\\]|\\.)*`)|(\b\d+(?:\.\d+)?\b)|([^"`/\d]+|.)/g;
    let m;
    while ((m = re.exec(line))) {
      if (m[1]) out += `<span class="tok-c">${esc(m[1])}</span>`;
      else if (m[2]) out += `<span class="tok-s">${esc(m[2])}</span>`;
      else if (m[3]) out += `<span class="tok-n">${m[3]}</span>`;
      else out += esc(m[4]).replace(KEYWORDS, '<span class="tok-k">$1</span>');
    }
    return i + 1 === badLine ? `<span class="line-bad">${out || " "}</span>` : out;
  }).join("\n") + "\n";
}
function editor(source) {
  const pre = h("pre", { "aria-hidden": "true" });
  const area = h("textarea", { id: "rule-source", spellcheck: "false", "aria-label": "script", name: "source" });
  area.value = source;
  let bad = null;
  const draw = () => { pre.innerHTML = highlight(area.value, bad); pre.scrollTop = area.scrollTop; pre.scrollLeft = area.scrollLeft; };
  area.addEventListener("input", () => { bad = null; draw(); });
  area.addEventListener("scroll", draw);
  area.addEventListener("keydown", (e) => {
    if (e.key === "Tab") { e.preventDefault(); area.setRangeText("    ", area.selectionStart, area.selectionEnd, "end"); draw(); }
  });
  const box = h("div", { class: "editor" }, pre, area);
  box.markLine = (n) => { bad = n; draw(); };
  draw();
  return box;
}
function lineDiff(a, b) {
  const x = a.split("\n"), y = b.split("\n");
  const L = x.map(() => new Array(y.length + 1).fill(0));
  L.push(new Array(y.length + 1).fill(0));
  for (let i = x.length - 1; i >= 0; i--) for (let j = y.length - 1; j >= 0; j--) L[i][j] = x[i] === y[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < x.length || j < y.length) {
    if (i < x.length && j < y.length && x[i] === y[j]) { out.push(h("div", {}, `  ${x[i]}`)); i++; j++; }
    else if (j < y.length && (i >= x.length || L[i][j + 1] >= L[i + 1][j])) { out.push(h("div", { class: "add" }, `+ ${y[j]}`)); j++; }
    else { out.push(h("div", { class: "del" }, `- ${x[i]}`)); i++; }
  }
  return h("pre", { class: "diff" }, out);
}
RENDER.rules = async (main) => {
  const all = (await gql(`{ rules { eventType activeVersion isDefault } }`)).rules;
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const pick = h("select", { id: "rule-type", "aria-label": t("event_type") }, all.map((r) => h("option", { value: r.eventType, selected: params.get("type") === r.eventType }, r.eventType)));
  const body = h("div", {});
  pick.addEventListener("change", () => { location.hash = `#/rules?type=${pick.value}`; });
  main.append(h("section", { class: "card" }, h("label", { for: "rule-type" }, t("event_type")), pick), body);
  const type = pick.value;
  const r = (await gql(`query($t: String) { rules(eventType: $t) { eventType activeVersion source isDefault defaultSource versions { version active shadow cases source createdBy createdAt } } }`, { t: type })).rules[0];
  const ed = editor(r.source);
  // The cases the new version must pass, as in `porteiro rules test` files; the active
  // version's own cases to start from.
  const activeRow = r.versions.find((v) => v.active);
  const cases = h("textarea", { id: "rule-cases", rows: 5, class: "code", spellcheck: "false", name: "cases", placeholder: '[{"name": "…", "eventId": 12, "expect": {"action": "grant"}}]' });
  cases.value = (activeRow && activeRow.cases) || "";
  const status = h("div", { id: "rule-status", role: "status" });
  const save = h("button", { type: "button", class: "primary", id: "rule-save", disabled: !isAdmin(), onclick: async () => {
    status.replaceChildren();
    try {
      // A draft: nothing changes until it is activated, after a test against history.
      const v = (await gql(`mutation($t: String!, $s: String!, $c: String) { saveRule(eventType: $t, source: $s, activate: false, cases: $c) { version } }`,
        { t: type, s: $("#rule-source").value, c: cases.value.trim() || null })).saveRule;
      toast(`${t("saved")}: v${v.version} (${t("draft")})`);
      route();
    } catch (e) {
      // Which cases failed, in the engine's words (names and decisions are the seller's own).
      const failed = (e.fields || []).find((f) => f.field === "cases");
      if (failed) {
        status.append(h("div", { class: "error", role: "alert", id: "cases-error" }, t("cases_failed"), h("pre", { tabindex: 0 }, failed.message)));
        return;
      }
      const m = /line (\d+)(?:, column (\d+))?/.exec(e.detail || e.message);
      if (m) ed.markLine(Number(m[1]));
      // Where the script is wrong, in words; the engine's own message folded below.
      status.append(h("div", { class: "error", role: "alert", id: "rule-error" },
        m ? `${t("rule_error_at")} ${m[1]}${m[2] ? `, ${t("column")} ${m[2]}` : ""}` : t("rule_error"),
        h("details", {}, h("summary", {}, t("details")), e.detail || e.message)));
    }
  } }, t("save_draft"));
  body.append(h("section", { class: "card" }, h("h2", {}, `${type} · v${r.activeVersion}${r.isDefault ? ` (${t("default_script")})` : ""}`), ed,
    h("details", { id: "cases-box", open: !!cases.value }, h("summary", {}, t("cases_title")), h("p", { class: "muted" }, t("cases_help")), h("label", { for: "rule-cases" }, t("cases_title")), cases),
    status, h("p", {}, save)));

  // Simulate: a stored event of this type, or a pasted payload.
  const evs = (await gql(`query($t: String) { webhookEvents(eventType: $t, first: 20) { nodes { id eventId receivedAt } } }`, { t: type })).webhookEvents.nodes;
  const stored = h("select", { id: "sim-event" }, h("option", { value: "" }, "—"), evs.map((e) => h("option", { value: e.id }, `${e.eventId} · ${fmt(e.receivedAt)}`)));
  const pasted = h("textarea", { id: "sim-payload", rows: 5, class: "code" });
  const out = h("pre", { id: "sim-result", hidden: true });
  const run = h("button", { type: "button", id: "sim-run", onclick: async () => {
    try {
      let payload = pasted.value.trim();
      if (!payload && stored.value) payload = (await gql(`query($id: ID!) { webhookEvent(id: $id) { rawPayload } }`, { id: stored.value })).webhookEvent.rawPayload;
      const s = (await gql(`mutation($p: String!) { simulateWebhook(payload: $p) { status eventType email decision ruleVersion error target { kind name } } }`, { p: payload })).simulateWebhook;
      out.hidden = false;
      out.textContent = JSON.stringify(s, null, 2);
    } catch (e) { out.hidden = false; out.textContent = e.message; }
  } }, t("simulate"));
  body.append(h("section", { class: "card" }, h("h2", {}, t("simulate")), h("p", { class: "muted" }, t("simulate_help")),
    h("label", { for: "sim-event" }, t("pick_event")), stored, h("label", { for: "sim-payload" }, t("paste_payload")), pasted, h("p", {}, run), out));

  // Versions: a diff against the active one, a test against history, and activation.
  const active = r.source;
  const diffBox = h("div", { id: "rule-diff" });
  const btBox = h("div", { id: "backtest" });
  const lastTest = {};
  const shown = async (id) => {
    const b = (await gql(`query($id: Int!) { ruleBacktest(id: $id) { id version status progress total error
      report { eventsEvaluated decisionsChanged decisionChanges { from to count } gained lost suspended endMoved changed truncated
        changes { kind source endMovedBySeconds before { email status expiresAt } after { email status expiresAt } } } } }`, { id })).ruleBacktest;
    lastTest[b.version] = b;
    renderBacktest(btBox, b, async () => { await gql(`mutation($id: Int!) { cancelRuleBacktest(id: $id) { id } }`, { id }); });
    return b;
  };
  const backtest = async (version) => {
    try {
      const b = (await gql(`mutation($t: String!, $v: Int!) { startRuleBacktest(eventType: $t, version: $v) { id } }`, { t: type, v: version })).startRuleBacktest;
      let now = await shown(b.id);
      while (now.status === "running" && document.body.contains(btBox)) {
        await new Promise((ok) => setTimeout(ok, 400));
        now = await shown(b.id);
      }
    } catch (e) { toast(e.message); }
  };
  // The latest test of each version, to recall before activating it.
  for (const b of (await gql(`query($t: String!) { ruleBacktests(eventType: $t, first: 20) { version status report { gained lost suspended endMoved } } }`, { t: type })).ruleBacktests) {
    if (!(b.version in lastTest) && b.status === "succeeded") lastTest[b.version] = b;
  }
  const activate = async (v) => {
    const b = lastTest[v.version];
    const said = b && b.report ? t("act_confirm_bt").replace("{g}", b.report.gained).replace("{l}", b.report.lost).replace("{s}", b.report.suspended).replace("{e}", b.report.endMoved) : t("act_confirm_none");
    if (!confirm(`${t("act_confirm").replace("{v}", `v${v.version}`)}\n${said}`)) return;
    try { await gql(`mutation($t: String!, $v: Int!) { activateRuleVersion(eventType: $t, version: $v) }`, { t: type, v: v.version }); toast(`v${v.version} ${t("active")}`); route(); } catch (e) { toast(e.message); }
  };
  const versions = [{ version: 0, active: r.activeVersion === 0, source: r.defaultSource, createdBy: "porteiro", createdAt: null }, ...r.versions];
  body.append(h("section", { class: "card" }, h("h2", {}, t("versions")), h("table", { id: "rule-versions" }, h("tbody", {}, versions.slice().reverse().map((v) => h("tr", { "data-version": v.version },
    h("td", {}, `v${v.version}`, v.active ? [" ", badge(t("active"))] : null, v.version > r.activeVersion && !v.active ? [" ", h("span", { class: "badge draft" }, t("draft"))] : null,
      v.shadow ? [" ", h("span", { class: "badge shadow" }, t("shadow"))] : null,
      v.cases ? [" ", h("span", { class: "muted", "data-cases": "" }, casesCount(v.cases))] : null),
    h("td", {}, actorText(v.createdBy)), h("td", {}, v.createdAt ? fmt(v.createdAt) : t("default_script")),
    h("td", {}, h("button", { type: "button", onclick: () => diffBox.replaceChildren(h("p", { class: "muted" }, t("diff")), lineDiff(active, v.source)) }, t("diff")), " ",
      isAdmin() ? h("button", { type: "button", class: "backtest", onclick: () => backtest(v.version) }, t("backtest")) : null, " ",
      !v.active && v.version > 0 && isAdmin() ? h("button", { type: "button", class: "shadow-toggle", onclick: async () => {
        try { await gql(`mutation($t: String!, $v: Int) { setRuleShadow(eventType: $t, version: $v) }`, { t: type, v: v.shadow ? null : v.version }); route(); } catch (e) { toast(e.message); }
      } }, v.shadow ? t("shadow_off") : t("shadow_on")) : null, " ",
      !v.active && isAdmin() ? h("button", { type: "button", class: "activate", onclick: () => activate(v) }, t("activate")) : null))))), btBox, diffBox));

  // The shadow: where it disagrees with the active version, and promotion in one action.
  const sh = (await gql(`query($t: String!) { ruleShadow(eventType: $t) { version current agreed disagreed samples { webhookEventId active shadow at } } }`, { t: type })).ruleShadow;
  const now = sh.find((x) => x.current);
  if (now) {
    body.append(h("section", { class: "card", id: "shadow" }, h("h2", {}, `${t("shadow_title")} · v${now.version}`), h("p", { class: "muted" }, t("shadow_help")),
      h("p", { id: "shadow-counts" }, t("shadow_counts").replace("{a}", new Intl.NumberFormat(lang).format(now.agreed)).replace("{d}", new Intl.NumberFormat(lang).format(now.disagreed))),
      now.samples.length ? h("table", { id: "shadow-samples" }, h("thead", {}, h("tr", {}, h("th", {}, t("shadow_event")), h("th", {}, t("shadow_active")), h("th", {}, t("shadow_would")))),
        h("tbody", {}, now.samples.map((x) => h("tr", {},
          h("td", { "data-label": t("shadow_event") }, h("a", { href: `#/events?id=${x.webhookEventId}` }, fmt(x.at))),
          h("td", { "data-label": t("shadow_active") }, decisionText(x.active)),
          h("td", { "data-label": t("shadow_would") }, decisionText(x.shadow)))))) : null,
      isAdmin() ? h("p", {}, h("button", { type: "button", class: "primary", id: "shadow-promote", onclick: async () => {
        if (!confirm(t("shadow_promote_confirm").replace("{v}", `v${now.version}`))) return;
        try { await gql(`mutation($t: String!) { promoteRuleShadow(eventType: $t) }`, { t: type }); toast(`v${now.version} ${t("active")}`); route(); } catch (e) { toast(e.message); }
      } }, t("shadow_promote"))) : null));
  }
};

// "3 casos" for a version's cases.
function casesCount(text) {
  let n = 0;
  try { n = JSON.parse(text).length; } catch { /* shown as saved */ }
  return `${n} ${new Intl.PluralRules(lang).select(n) === "one" ? t("case_one") : t("case_other")}`;
}

// A backtest's progress, then who would gain or lose access, before anyone activates it.
function renderBacktest(box, b, cancel) {
  const head = h("h3", {}, `${t("bt_title")} · v${b.version}`);
  if (b.status === "running") {
    box.replaceChildren(head, h("p", { role: "status" }, `${t("bt_running")}… ${b.progress} ${t("bt_of")} ${b.total}`, " ",
      h("button", { type: "button", onclick: cancel }, t("bt_cancel"))));
    return;
  }
  if (!b.report) {
    box.replaceChildren(head, h("p", { class: "error", role: "alert" }, `${t("bt_failed")}: ${badge(b.status).textContent} ${b.error || ""}`));
    return;
  }
  const r = b.report;
  const n = (x) => new Intl.NumberFormat(lang).format(x);
  const kindOf = (k) => t(`dk_${k}`) !== `dk_${k}` ? t(`dk_${k}`) : ((STATUS[lang] && STATUS[lang][k]) || k);
  const state = (a) => a ? h("span", {}, badge(a.status), a.expiresAt ? ` ${t("until_short")} ${fmt(a.expiresAt)}` : ` ${t("lifetime")}`) : t("no_access");
  box.replaceChildren(head,
    h("p", { id: "backtest-summary" }, `${n(r.eventsEvaluated)} ${t("bt_events")} · ${n(r.decisionsChanged)} ${t("bt_decisions")}`),
    r.decisionChanges.length ? h("ul", {}, r.decisionChanges.map((c) => h("li", {}, `${kindOf(c.from)} → ${kindOf(c.to)}: ${n(c.count)}`))) : null,
    h("p", { id: "backtest-counts" }, [["gained", r.gained], ["lost", r.lost], ["suspended", r.suspended], ["end_moved", r.endMoved], ["changed", r.changed]]
      .filter(([, x]) => x > 0).map(([k, x]) => `${n(x)} ${t(`bt_${k}`)}`).join(" · ") || t("bt_none")),
    r.changes.length ? h("table", { id: "backtest-changes" }, h("thead", {}, h("tr", {}, h("th", {}, t("email")), h("th", {}, t("bt_change")), h("th", {}, t("bt_before")), h("th", {}, t("bt_after")))),
      h("tbody", {}, r.changes.map((c) => {
        const who = (c.after || c.before).email;
        return h("tr", { "data-kind": c.kind },
          h("td", { "data-label": t("email") }, h("a", { href: `#/buyers?email=${encodeURIComponent(who)}` }, who)),
          h("td", { "data-label": t("bt_change") }, t(`bt_${c.kind}`)),
          h("td", { "data-label": t("bt_before") }, state(c.before)),
          h("td", { "data-label": t("bt_after") }, state(c.after)));
      }))) : null,
    r.truncated ? h("p", { class: "muted" }, t("bt_truncated")) : null);
}

// ---- reconciliation
RENDER.reconcile = async (main) => {
  const day = (d) => new Date(Date.now() - d * 86400e3).toISOString().slice(0, 10);
  const since = h("input", { type: "date", id: "rc-since", value: day(30) });
  const until = h("input", { type: "date", id: "rc-until", value: day(0) });
  const runs = h("div", { id: "rc-runs" });
  const start = (dry) => async () => {
    try {
      await gql(`mutation($s: DateTime!, $u: DateTime, $d: Boolean!) { reconcile(since: $s, until: $u, dryRun: $d) { id } }`,
        { s: new Date(since.value).toISOString(), u: new Date(new Date(until.value).getTime() + 86400e3).toISOString(), d: dry });
      load();
    } catch (e) { toast(e.message); }
  };
  const load = async () => {
    const d = (await gql(`{ reconciliationRuns(first: 10) { id status dryRun stage progress error startedAt finishedAt
      report { salesSeen subscriptionsSeen eventsNew eventsKnown unmappedProducts applied drift { kind email target beforeStatus afterStatus afterExpiresAt } } } }`)).reconciliationRuns;
    runs.replaceChildren(...d.map((r) => h("div", { class: "card" },
      h("p", {}, badge(r.status), ` ${r.dryRun ? t("dry_run") : t("apply")} · ${fmt(r.startedAt)} · ${t("progress")}: ${r.stage || ""} ${r.progress}`, r.error ? h("span", { class: "error" }, ` ${r.error}`) : null),
      r.report ? h("p", { class: "muted" }, `sales ${r.report.salesSeen} · subscriptions ${r.report.subscriptionsSeen} · new ${r.report.eventsNew} · known ${r.report.eventsKnown}`) : null,
      r.report && r.report.drift.length ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, t("drift")), h("th", {}, t("email")), h("th", {}, t("target")), h("th", {}, t("status")))),
        h("tbody", {}, r.report.drift.map((x) => h("tr", {}, h("td", {}, x.kind), h("td", {}, x.email), h("td", {}, x.target), h("td", {}, `${x.beforeStatus || "—"} → ${x.afterStatus}`))))) : null)));
  };
  main.append(h("section", { class: "card" }, h("div", { class: "row" }, h("div", {}, h("label", { for: "rc-since" }, t("since")), since),
    h("div", {}, h("label", { for: "rc-until" }, t("to")), until),
    h("button", { type: "button", class: "shrink", disabled: !isAdmin(), onclick: start(true) }, t("dry_run")),
    h("button", { type: "button", class: "shrink primary", disabled: !isAdmin(), onclick: start(false) }, t("apply")))), runs);
  await load();
  timers.push(setInterval(() => load().catch(() => {}), 2000));
};

// ---- notifications
RENDER.notifications = async (main) => {
  const d = await gql(`{ notificationEventTypes notificationEndpoints { id uid url description eventTypes enabled disabledReason }
    notificationDeliveries(first: 50) { nodes { id endpointId status eventType attemptCount lastStatusCode lastLatencyMs lastError nextAttemptAt createdAt } } }`);
  const eps = h("section", { class: "card", id: "endpoints" }, h("h2", {}, t("endpoints")), h("table", {}, h("tbody", {}, d.notificationEndpoints.map((e) => h("tr", {},
    h("td", { class: "code" }, e.url), h("td", {}, e.eventTypes.join(", ") || t("all")), h("td", {}, e.enabled ? badge("ACTIVE") : h("span", {}, badge("DEAD"), " ", e.disabledReason || "")),
    h("td", {}, isAdmin() ? [h("button", { type: "button", onclick: async () => {
      try { const r = (await gql(`mutation($e: ID!) { sendTestNotification(endpointId: $e) { status lastStatusCode lastError } }`, { e: e.id })).sendTestNotification; toast(`${r.status} ${r.lastStatusCode ?? ""} ${r.lastError ?? ""}`); route(); } catch (x) { toast(x.message); }
    } }, t("send_test")), " ", h("button", { type: "button", onclick: async () => {
      try { await gql(`mutation($e: ID!, $on: Boolean) { updateNotificationEndpoint(id: $e, input: {enabled: $on}) { id } }`, { e: e.id, on: !e.enabled }); route(); } catch (x) { toast(x.message); }
    } }, e.enabled ? "⏸" : "▶"), " ", h("button", { type: "button", class: "danger", onclick: async () => {
      if (!confirm(e.url)) return;
      try { await gql(`mutation($e: ID!) { deleteNotificationEndpoint(id: $e) }`, { e: e.id }); route(); } catch (x) { toast(x.message); }
    } }, t("delete"))] : null))))));
  if (isAdmin()) {
    const url = h("input", { type: "url", name: "url", id: "ep-url", placeholder: "https://" });
    const desc = h("input", { type: "text", name: "description", id: "ep-description" });
    const types = d.notificationEventTypes.map((x) => h("label", { style: "display:inline;font-weight:400;margin-right:10px" }, h("input", { type: "checkbox", value: x }), ` ${x}`));
    const form = h("form", { id: "endpoint-form" }, h("h2", {}, t("create")), h("label", { for: "ep-url" }, t("url")), url, h("label", { for: "ep-description" }, t("description")), desc,
      h("p", {}, types), h("button", { type: "submit", class: "primary" }, t("create")));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const r = (await gql(`mutation($i: NotificationEndpointInput!) { createNotificationEndpoint(input: $i) { secret } }`,
          { i: { url: url.value, description: desc.value, eventTypes: types.map((l) => l.querySelector("input")).filter((c) => c.checked).map((c) => c.value) } })).createNotificationEndpoint;
        form.replaceChildren(h("p", {}, t("secret_once")), h("pre", { id: "endpoint-secret" }, r.secret), h("button", { type: "button", onclick: route }, "OK"));
      } catch (e) { showErrors(form, e); }
    });
    eps.append(form);
  }
  const dl = h("section", { class: "card", id: "deliveries" }, h("h2", {}, t("deliveries")), h("table", {},
    h("thead", {}, h("tr", {}, [t("when"), t("type"), t("status"), t("attempts"), t("code"), t("latency"), t("next_try"), ""].map((x) => h("th", {}, x)))),
    h("tbody", {}, d.notificationDeliveries.nodes.map((x) => h("tr", {}, h("td", {}, fmt(x.createdAt)), h("td", {}, x.eventType), h("td", {}, badge(x.status)),
      h("td", {}, x.attemptCount), h("td", {}, x.lastStatusCode ?? (x.lastError || "—")), h("td", {}, x.lastLatencyMs !== null ? `${x.lastLatencyMs} ms` : "—"), h("td", {}, fmt(x.nextAttemptAt)),
      h("td", {}, isAdmin() && x.status !== "PENDING" ? h("button", { type: "button", onclick: async () => {
        try { await gql(`mutation($d: ID!) { resendNotification(deliveryId: $d) }`, { d: x.id }); route(); } catch (e) { toast(e.message); }
      } }, t("resend")) : null))))));
  main.append(eps, dl);
};

// ---- audit
// Who did it, in words: "role:subject" (the console's sessions say "console:<who>").
function actorText(actor) {
  if (actor === "rules") return t("actor_rules");
  if (actor === "timer") return t("actor_timer");
  const m = /^(admin|viewer):(?:console:)?(.+)$/.exec(actor);
  return m ? `${m[2]} (${m[1] === "admin" ? t("role_admin") : t("role_viewer")})` : actor;
}
// The reason the ledger writes for a rule's change: "PURCHASE_APPROVED (grant until …)".
function auditReason(r) {
  const m = /^([A-Z_]+) \((.*)\)$/.exec(r || "");
  if (m && EVENT_NAMES.en[m[1]]) return h("span", {}, eventName(m[1]), " — ", decisionText(m[2]));
  const forced = /^forced: revoked access of (\d+) buyer/.exec(r || "");
  if (forced) return `${t("audit_forced")} ${plural(Number(forced[1]), { one: t("buyer_word_one"), other: t("buyer_word_other") })}`;
  // An admin's own words.
  return h("span", { "data-raw": "" }, r || "");
}
// What a row is about, in names: "Plano Mensal (plano)", "ana@… — Plano Mensal", an event's type.
function subjectText(s) {
  if (s.kind === "webhook_event" || s.kind === "rule") return eventName(s.name);
  if (s.kind === "webhook_events") return `${t("subj_webhook_events")}: ${STATUS[lang]?.[s.name] || s.name}`;
  const kind = t(`subj_${s.kind}`) !== `subj_${s.kind}` ? t(`subj_${s.kind}`) : s.kind;
  return s.name ? `${s.name} (${kind})` : kind;
}
RENDER.audit = async (main) => {
  const d = (await gql(`{ auditLog(first: 100) { nodes { actor action target subject { kind name } reason createdAt before after } } }`)).auditLog.nodes;
  main.append(h("section", { class: "card" }, h("table", { id: "audit-table" }, h("thead", {}, h("tr", {}, [t("when"), t("actor"), t("action"), t("audit_target"), t("reason")].map((x) => h("th", {}, x)))),
    h("tbody", {}, d.map((a) => h("tr", { title: JSON.stringify({ before: a.before, after: a.after }) }, h("td", {}, fmt(a.createdAt)), h("td", {}, actorText(a.actor)),
      h("td", { title: a.action }, t(`act_${a.action}`) !== `act_${a.action}` ? t(`act_${a.action}`) : a.action),
      h("td", { title: a.target, "data-target": a.target }, subjectText(a.subject)), h("td", {}, auditReason(a.reason))))))));
};

// ---------------------------------------------------------------- start
function applyLang() {
  document.documentElement.lang = lang;
  $("#lang").value = lang;
  $("#lang-label").textContent = t("lang");
  $("#signout").textContent = t("signout");
}
async function start() {
  applyLang();
  $("#lang").addEventListener("change", (e) => { lang = e.target.value; localStorage.setItem("porteiro.lang", lang); applyLang(); route(); });
  $("#signout").addEventListener("click", async () => {
    await fetch("/console/logout", { method: "POST", credentials: "same-origin", headers: { "x-porteiro-console": "1" } });
    location.reload();
  });
  try {
    me = (await gql("{ me { app role subject } }")).me;
  } catch (e) {
    $("#nav").replaceChildren();
    $("#main").replaceChildren(h("section", { class: "card", id: "signin" }, h("h1", {}, t("signin_title")), h("p", {}, t("signin_how")),
      h("pre", {}, "porteiro login --app default"), e.code === "UNAUTHENTICATED" ? null : h("p", { class: "error" }, e.message)));
    return;
  }
  $("#who").textContent = `${me.app} · ${me.role}`;
  $("#signout").hidden = false;
  window.addEventListener("hashchange", route);
  await route();
}
start();
