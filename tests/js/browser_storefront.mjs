// The storefront journey as a shop's page runs it: fetch() from a page on one origin against
// the bridge on another, in Debian's headless Chromium driven by playwright-core. Run by
// tests/integration/http/test_browser_storefront.py with one JSON argument:
//   { executablePath, flags, userDataDir, allowedPage, blockedPage, bridge, tenant, clientId,
//     email, password }
// and prints one JSON object: what the page on the allowed origin read at each step, how each
// fetch from the page on the blocked origin ended (the browser must refuse the answer: fetch
// rejects with a TypeError), and the pages' console lines (where Chromium says why). Nothing the pages read is a secret of a real shop.
import { chromium } from 'playwright-core';

const input = JSON.parse(process.argv[2]);

// Runs in the page: the whole journey, each step's status and what it tells the next.
async function journey({ bridge, tenant, clientId, email, password }) {
  const steps = {};
  const json = async (name, response) => {
    steps[name] = { status: response.status };
    return response.status === 204 ? {} : response.json();
  };
  const query = (params) => new URLSearchParams(params).toString();
  const anonymous = await json('anonymous_login', await fetch(
    `${bridge}/customerlogin/auth/anonymous/login?${query({ tenant, client_id: clientId })}`));
  const refreshed = await json('anonymous_refresh', await fetch(
    `${bridge}/customerlogin/auth/anonymous/refresh?${query({
      tenant, client_id: clientId, refresh_token: anonymous.refresh_token })}`));
  const customer = await json('customer_login', await fetch(`${bridge}/customer/${tenant}/login`, {
    method: 'POST',
    headers: {
      'Authorization': `Bearer ${refreshed.access_token}`,
      'Content-Type': 'application/json',
    },
    body: JSON.stringify({ email, password }),
  }));
  const validated = await json('validate', await fetch(
    `${bridge}/customer/${tenant}/validateauthtoken`,
    { headers: { 'Authorization': `Bearer ${customer.access_token}` } }));
  // Authorised by the customer's access token (not the anonymous one).
  const renewed = await json('customer_refresh', await fetch(
    `${bridge}/customer/${tenant}/refreshauthtoken?${query({ refreshToken: customer.refresh_token })}`,
    { headers: { 'Authorization': `Bearer ${customer.access_token}` } }));
  await json('logout', await fetch(`${bridge}/customer/${tenant}/logout`,
    { headers: { 'Authorization': `Bearer ${renewed.access_token}` } }));
  // An error the page must be able to read: status, body and the exposed WWW-Authenticate.
  const after = await fetch(`${bridge}/customer/${tenant}/validateauthtoken`,
    { headers: { 'Authorization': `Bearer ${renewed.access_token}` } });
  steps.validate_after_logout = {
    status: after.status,
    wwwAuthenticate: after.headers.get('www-authenticate'),
    body: await after.json(),
  };
  return {
    steps,
    sessions: [anonymous.sessionId, refreshed.sessionId, customer.session_id,
      renewed.session_id],
    email: validated.email,
    customerTokenChanged: renewed.access_token !== customer.access_token,
  };
}

// Runs in the page: each kind of request once, and how its fetch ended.
async function blocked({ bridge, tenant, clientId }) {
  const outcome = async (request) => {
    try {
      const response = await request();
      return { resolved: response.status };
    } catch (error) {
      return { rejected: error.constructor.name, message: String(error.message) };
    }
  };
  const query = new URLSearchParams({ tenant, client_id: clientId }).toString();
  return {
    // A simple request: no preflight; the answer comes without CORS headers.
    anonymous_login: await outcome(() => fetch(
      `${bridge}/customerlogin/auth/anonymous/login?${query}`)),
    // A preflighted request (JSON body, Authorization): the preflight is refused.
    customer_login: await outcome(() => fetch(`${bridge}/customer/${tenant}/login`, {
      method: 'POST',
      headers: { 'Authorization': 'Bearer anything', 'Content-Type': 'application/json' },
      body: JSON.stringify({ email: 'ann@example.com', password: 'not the password' }),
    })),
  };
}

const context = await chromium.launchPersistentContext(input.userDataDir, {
  executablePath: input.executablePath,
  headless: true,
  args: input.flags,
});
try {
  const page = await context.newPage();
  const result = { console: [] };
  page.on('console', (message) => result.console.push(message.text()));
  await page.goto(input.allowedPage);
  result.allowed = await page.evaluate(journey, input);
  await page.goto(input.blockedPage);
  result.blocked = await page.evaluate(blocked, input);
  process.stdout.write(JSON.stringify(result) + '\n');
} finally {
  await context.close();
}
