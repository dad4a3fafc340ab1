// node-oidc-provider as the benchmark's peer (bench/peers.py installs the pinned package-lock.json
// into a cache folder and runs `BENCH_CLIENT_SECRET=... node server.mjs PORT CLIENT_ID`): client_credentials
// and introspection enabled, one confidential client authenticating with client_secret_post, the
// package's own in-memory adapter (so nothing it issues is persisted), no other feature.
import Provider from 'oidc-provider';

const [port, clientId] = process.argv.slice(2);
const clientSecret = process.env.BENCH_CLIENT_SECRET; // not on the command line: ps shows that
const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_post',
  }],
  // the service's own lifetime for service tokens (contract: 14400 s)
  ttl: { ClientCredentials: 14400 },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // a client may introspect the tokens issued to itself (the default policy, stated so
      // that the provider does not warn on every start)
      allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId,
    },
  },
});
provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
