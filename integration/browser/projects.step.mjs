// The Projects step of the browser test (console.test.mjs runs it with its
// daemon and page): a site admin opens the default project's settings, sees
// the site's default quotas next to what the project uses, narrows a quota
// and approves a function domain (checked through the API after a reload), is
// shown the API's 422 with its field for a domain that is not a DNS name, and
// puts the quota back.

import assert from "node:assert/strict";

/** Reads the default project through the API with the page's session. */
async function defaultProject(p) {
  return p.evaluate(async () => {
    const res = await fetch("/v1/projects/default", { credentials: "same-origin", headers: { Accept: "application/json" } });
    return res.json();
  });
}

export async function projectsStep({ p, byTestId, waitFor, timeout }) {
  await p.click(byTestId("nav-projects"));
  await p.waitForURL((url) => url.pathname === "/projects");
  await p.click(byTestId("settings-project-default"));
  const card = p.locator(byTestId("project-settings"));
  await card.waitFor();
  // The site's defaults were written into the new project's spec.
  assert.equal(await p.locator(byTestId("quota-vcpus")).inputValue(), "64");
  assert.equal(await p.locator(byTestId("quota-instances")).inputValue(), "20");
  assert.match((await p.locator(byTestId("quota-used-vcpus")).textContent()) ?? "", /^\d+$/);

  // Narrow a quota and approve a domain; the change is the project's after a reload.
  await p.fill(byTestId("quota-vcpus"), "3");
  await p.fill(byTestId("project-domains"), "apps.example");
  await p.click(byTestId("project-settings-save"));
  await waitFor("the saved settings", async () => {
    const proj = await defaultProject(p);
    return proj.spec?.quotas?.vcpus === 3 && proj.spec?.function_domains?.[0] === "apps.example";
  }, timeout);
  await p.reload();
  await p.click(byTestId("settings-project-default"));
  await card.waitFor();
  await waitFor("the stored quota in the form", async () => (await p.locator(byTestId("quota-vcpus")).inputValue()) === "3", timeout);
  assert.equal(await p.locator(byTestId("project-domains")).inputValue(), "apps.example");

  // A domain that is not a DNS name: the API's 422 names the field, and nothing changes.
  await p.fill(byTestId("project-domains"), "not a domain!");
  await p.click(byTestId("project-settings-save"));
  const field = card.locator(byTestId("error-field"));
  await field.waitFor();
  assert.match((await field.textContent()) ?? "", /spec\.function_domains/);
  assert.deepEqual((await defaultProject(p)).spec?.function_domains, ["apps.example"]);

  // Back to the default quota, without the domain.
  await p.fill(byTestId("project-domains"), "");
  await p.fill(byTestId("quota-vcpus"), "64");
  await p.click(byTestId("project-settings-save"));
  await waitFor("the restored settings", async () => {
    const proj = await defaultProject(p);
    return proj.spec?.quotas?.vcpus === 64 && (proj.spec?.function_domains ?? []).length === 0;
  }, timeout);
  await p.click(byTestId("project-settings-close"));
}
