// Drives a real VS Code (code-server) in headless Chromium through the kdap
// extension's "Take a stack dump, profile, heap or core dump" command:
// answers the pod picker (namespace, then pod) and the diagnostic picker,
// and reads the editor that opens. Prints OPENED TAB and the first line of
// the editor's text as TEXT ….
// Usage: node take-diagnostic.mjs URL FOLDER NAMESPACE POD WHAT SCREENSHOT
import { chromium } from 'playwright-core';

const [url, folder, namespace, pod, what, screenshot] = process.argv.slice(2);
const step = (s) => console.error(`ui: ${s}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
    '--no-first-run', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
try {
  await page.goto(`${url}/?folder=${encodeURIComponent(folder)}`);
  await page.waitForSelector('.monaco-workbench .part.editor', { timeout: 90_000 });
  step('workbench loaded');
  await page.waitForTimeout(1500);
  const title = 'Take a stack dump, profile, heap or core dump of a running pod';
  const input = page.locator('.quick-input-widget input');
  // The palette lists the extension's command once the extension host
  // has loaded it, which may come after the workbench: ask again.
  for (let attempt = 1; ; attempt++) {
    await page.keyboard.press('F1');
    await input.waitFor({ state: 'visible' });
    await input.fill(`>kdap: ${title}`);
    try {
      await page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first().waitFor({ timeout: 10_000 });
      break;
    } catch (e) {
      if (attempt === 5) throw e;
      step(`the palette has no "${title}" yet (attempt ${attempt}); again`);
      await page.keyboard.press('Escape');
      await page.waitForTimeout(2000);
    }
  }
  await page.keyboard.press('Enter');
  for (const [question, answer] of [['kdap: namespace', namespace], [`kdap: pod in ${namespace}`, pod], [`kdap: diagnostic of ${namespace}/${pod}`, what]]) {
    await page.locator('.quick-input-widget .quick-input-title', { hasText: question }).waitFor({ timeout: 60_000 });
    await input.fill(answer);
    await page.locator('.quick-input-list .monaco-list-row', { hasText: answer }).first().waitFor();
    await page.keyboard.press('Enter');
    step(`picked ${answer} in "${question}"`);
  }
  const tab = page.locator('.tabs-container .tab.active', { hasText: `${pod}-` });
  await tab.first().waitFor({ timeout: 120_000 });
  await page.waitForTimeout(500);
  const name = (await tab.first().innerText()).replace(/\s+/g, '');
  console.log(`OPENED ${name}`);
  const text = (await page.locator('.editor-group-container.active .monaco-editor .view-lines').first().innerText()).replace(/\u00a0/g, ' ');
  console.log(`TEXT ${text.split('\n').slice(0, 3).join(' | ')}`);
  await page.screenshot({ path: screenshot });
} catch (e) {
  await page.screenshot({ path: screenshot.replace(/\.png$/, '-failure.png') }).catch(() => {});
  console.error(`ui: failed: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
