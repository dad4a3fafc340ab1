// Standard OAuth clients against the running service, with nothing but the issuer URL and a
// client's credentials: openid-client and oauth4webapi each discover the service (RFC 8414),
// get a service token with client_credentials (client_secret_basic and client_secret_post),
// introspect it (RFC 7662), revoke it (RFC 7009) and introspect it again; jose verifies a SaaS
// token against the discovered JWKS with the discovered issuer.
//
// Input: one JSON object on stdin
//   {issuer, client_id, client_secret, saas_token, audience, now}
// (`now`: the service's clock, in seconds, which jose checks exp and iat against).
// Output: one JSON report on stdout; any library error ends the run with exit code 1 and the
// error's name, code and message on stderr (the libraries never put secrets in those).
//
// Plain http on 127.0.0.1 is the test's loopback: both OAuth libraries refuse http unless
// told (allowInsecureRequests), which nothing here does for any other host.

import * as client from "openid-client";
import * as oauth from "oauth4webapi";
import * as jose from "jose";

const METHODS = ["client_secret_basic", "client_secret_post"];

async function readInput() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

function assertLoopback(url) {
  if (url.protocol === "http:" && url.hostname !== "127.0.0.1") {
    throw new Error(`refusing plain http to ${url.host}: only the loopback test server`);
  }
}

// Each library's own fetch hook, so the report shows how it really authenticated: for every
// request, its path, whether it carried HTTP Basic, and whether the body held a client_secret.
function recordingFetch(requests) {
  return async (url, options) => {
    const headers = new Headers(options.headers);
    const body = new URLSearchParams(options.body ? String(options.body) : "");
    requests.push({
      method: options.method,
      path: new URL(url).pathname,
      basic: (headers.get("authorization") || "").startsWith("Basic "),
      secret_in_body: body.has("client_secret"),
    });
    return fetch(url, options);
  };
}

function tokenSummary(token) {
  return {
    access_token: token.access_token,
    token_type: token.token_type,
    expires_in: token.expires_in,
    scope: token.scope,
    has_refresh_token: "refresh_token" in token,
    fields: Object.keys(token).sort(),
  };
}

function introspectionSummary(answer) {
  const { active, client_id, scope, token_type, kind, tenant, iss } = answer;
  return { active, client_id, scope, token_type, kind, tenant, iss };
}

async function withOpenidClient(input, method) {
  const auth =
    method === "client_secret_basic"
      ? client.ClientSecretBasic(input.client_secret)
      : client.ClientSecretPost(input.client_secret);
  const requests = [];
  const config = await client.discovery(new URL(input.issuer), input.client_id, undefined, auth, {
    algorithm: "oauth2",
    execute: [client.allowInsecureRequests],
    [client.customFetch]: recordingFetch(requests),
  });
  const metadata = config.serverMetadata();
  const token = await client.clientCredentialsGrant(config);
  const before = await client.tokenIntrospection(config, token.access_token);
  await client.tokenRevocation(config, token.access_token);
  const after = await client.tokenIntrospection(config, token.access_token);
  return {
    token_endpoint: metadata.token_endpoint,
    token: tokenSummary(token),
    introspected: introspectionSummary(before),
    after_revocation: introspectionSummary(after),
    requests,
  };
}

async function withOauth4webapi(input, method) {
  const issuer = new URL(input.issuer);
  const requests = [];
  const options = {
    [oauth.allowInsecureRequests]: true,
    [oauth.customFetch]: recordingFetch(requests),
  };
  const as = await oauth.processDiscoveryResponse(
    issuer,
    await oauth.discoveryRequest(issuer, { algorithm: "oauth2", ...options }),
  );
  const oauthClient = { client_id: input.client_id };
  const auth =
    method === "client_secret_basic"
      ? oauth.ClientSecretBasic(input.client_secret)
      : oauth.ClientSecretPost(input.client_secret);
  const token = await oauth.processClientCredentialsResponse(
    as,
    oauthClient,
    await oauth.clientCredentialsGrantRequest(as, oauthClient, auth, {}, options),
  );
  const introspect = async () =>
    oauth.processIntrospectionResponse(
      as,
      oauthClient,
      await oauth.introspectionRequest(as, oauthClient, auth, token.access_token, options),
    );
  const before = await introspect();
  await oauth.processRevocationResponse(
    await oauth.revocationRequest(as, oauthClient, auth, token.access_token, options),
  );
  const after = await introspect();
  return {
    token_endpoint: as.token_endpoint,
    token: tokenSummary(token),
    introspected: introspectionSummary(before),
    after_revocation: introspectionSummary(after),
    requests,
  };
}

async function withJose(input) {
  const issuer = new URL(input.issuer);
  const as = await oauth.processDiscoveryResponse(
    issuer,
    await oauth.discoveryRequest(issuer, {
      algorithm: "oauth2",
      [oauth.allowInsecureRequests]: true,
    }),
  );
  const jwksUri = new URL(as.jwks_uri);
  assertLoopback(jwksUri);
  const keys = jose.createRemoteJWKSet(jwksUri);
  const verifyOptions = {
    issuer: as.issuer,
    audience: input.audience,
    algorithms: ["ES256"],
    requiredClaims: ["iss", "aud", "sub", "tenant", "sid", "iat", "exp", "jti"],
    currentDate: new Date(input.now * 1000),
  };
  const { payload, protectedHeader } = await jose.jwtVerify(input.saas_token, keys, verifyOptions);
  let otherAudience = "accepted";
  try {
    await jose.jwtVerify(input.saas_token, keys, { ...verifyOptions, audience: "another-api" });
  } catch (error) {
    otherAudience = error.code;
  }
  return {
    jwks_uri: as.jwks_uri,
    issuer: as.issuer,
    kid: protectedHeader.kid,
    alg: protectedHeader.alg,
    claims: {
      iss: payload.iss,
      aud: payload.aud,
      sub: payload.sub,
      sid: payload.sid,
      tenant: payload.tenant,
    },
    other_audience: otherAudience,
  };
}

async function main() {
  const input = await readInput();
  assertLoopback(new URL(input.issuer));
  const report = { "openid-client": {}, oauth4webapi: {} };
  for (const method of METHODS) {
    report["openid-client"][method] = await withOpenidClient(input, method);
    report.oauth4webapi[method] = await withOauth4webapi(input, method);
  }
  report.jose = await withJose(input);
  process.stdout.write(JSON.stringify(report));
}

main().catch((error) => {
  // openid-client wraps what oauth4webapi found ("invalid response encountered"): say both.
  const cause = error.cause instanceof Error ? error.cause : {};
  const described = {
    name: error.name,
    code: error.code,
    message: error.message,
    error: error.error,
    status: error.status,
    cause: cause.message,
  };
  process.stderr.write(`${JSON.stringify(described)}\n`);
  process.exit(1);
});
