// A real OpenID provider for the token exchange and social login tests: node-oidc-provider,
// on 127.0.0.1:$PORT, signing with the private JWKS in the file $KEYS (the test writes it, and
// rotates keys by restarting this script with a new file on the same port and issuer).
//
// - client_credentials for the client "storefront-backend": a JWT access token (RFC 9068) for
//   the resource "urn:storefront" (its aud), with an email claim naming
//   "<client id>@idp.example": the subject token a back end exchanges.
// - authorization_code with PKCE for the client "shop-web": the interaction logs in, without a
//   form, the account named by the authorization request's login_hint (an e-mail address) and
//   grants "openid email"; the ID token carries email and email_verified.
//
// Prints "listening <issuer>" once it accepts connections.
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const jwks = JSON.parse(readFileSync(process.env.KEYS, 'utf8'));
const redirect = process.env.REDIRECT_URI;

const provider = new Provider(issuer, {
  jwks,
  clients: [
    {
      client_id: 'storefront-backend',
      client_secret: 'storefront-backend-secret',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
    },
    {
      client_id: 'shop-web',
      client_secret: 'shop-web-secret',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: [redirect],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => 'urn:storefront',
      getResourceServerInfo: async () => ({
        scope: '',
        audience: 'urn:storefront',
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  scopes: ['openid', 'email'],
  claims: { email: ['email', 'email_verified'], openid: ['sub'] },
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  extraTokenClaims: async (_ctx, token) => (
    token.kind === 'ClientCredentials'
      ? { email: `${token.clientId}@idp.example`, email_verified: true }
      : undefined
  ),
  findAccount: async (_ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, email: id, email_verified: true }),
  }),
  ttl: { ClientCredentials: 600, AccessToken: 600, IdToken: 600, AuthorizationCode: 60 },
});

// The interaction: no login form, the login_hint's account, "openid email" granted.
provider.use(async (ctx, next) => {
  if (ctx.method !== 'GET' || !ctx.path.startsWith('/interaction/')) {
    await next();
    return;
  }
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const accountId = String(details.params.login_hint || '');
  const grant = new provider.Grant({ accountId, clientId: String(details.params.client_id) });
  grant.addOIDCScope('openid email');
  const grantId = await grant.save();
  const target = await provider.interactionResult(
    ctx.req,
    ctx.res,
    { login: { accountId }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
  ctx.redirect(target);
});

const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${issuer}\n`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
