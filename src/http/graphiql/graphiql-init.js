// GraphiQL against this server. Signed in to the console, the session cookie works here too (the
// header below is the console's CSRF guard); otherwise put {"Authorization": "Bearer <token>"}
// in the Headers tab (`porteiro token --app SLUG`).
const fetcher = GraphiQL.createFetcher({
  url: "/graphql",
  headers: { "x-porteiro-console": "1" },
});
ReactDOM.createRoot(document.getElementById("graphiql")).render(
  React.createElement(GraphiQL, { fetcher, defaultEditorToolsVisibility: true }),
);
