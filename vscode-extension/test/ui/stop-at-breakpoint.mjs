// Drives a real VS Code (code-server) in headless Chromium: opens the
// workspace, sets a breakpoint from the editor, starts the launch
// configuration through the kdap extension, and reads from the UI where the
// debugger stopped. Prints STARTED when the session is starting (the caller
// then sends the request that hits the breakpoint), STOPPED FILE LINE when
// the UI shows the stop, CONTINUED after continuing.
// With NAMESPACE and POD, the configuration names no target and the
// extension's picker is answered: namespace, then pod.
// Usage: node stop-at-breakpoint.mjs URL FOLDER FILE LINE CONFIG SCREENSHOT [NAMESPACE POD]
import { chromium } from 'playwright-core';

const [url, folder, file, line, config, screenshot, pickNamespace, pickPod] = process.argv.slice(2);
const step = (what) => console.error(`ui: ${what}`);

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
  await page.waitForTimeout(1500); // let the workbench settle (extensions, keybindings)

  // Run a command from the command palette.
  const command = async (name) => {
    await page.keyboard.press('F1');
    const input = page.locator('.quick-input-widget input');
    await input.waitFor({ state: 'visible' });
    await input.fill(`>${name}`);
    await page.locator('.quick-input-list .monaco-list-row', { hasText: name }).first().waitFor();
    await page.keyboard.press('Enter');
  };

  // Open the file at the line with Quick Open ("main.go:22") and toggle a
  // breakpoint there. Panels that load late can take the focus: retry.
  const base = file.split('/').pop();
  for (let attempt = 1; ; attempt++) {
    await page.keyboard.press('Control+P');
    const quick = page.locator('.quick-input-widget input');
    await quick.waitFor({ state: 'visible' });
    await quick.fill(`${base}:${line}`);
    await page.locator('.quick-input-list .monaco-list-row', { hasText: base }).first().waitFor();
    await page.keyboard.press('Enter');
    await page.locator('.statusbar-item', { hasText: `Ln ${line},` }).first().waitFor({ timeout: 10_000 });
    step(`opened ${file} at line ${line}`);
    if (await page.locator('.monaco-editor .codicon-debug-breakpoint').count() > 0) {
      break; // set in an earlier run: VS Code keeps breakpoints per workspace
    }
    await command('Debug: Toggle Breakpoint');
    try {
      await page.locator('.monaco-editor .codicon-debug-breakpoint').first().waitFor({ timeout: 5_000 });
      break;
    } catch (e) {
      if (attempt === 3) throw e;
      step(`no breakpoint glyph yet (attempt ${attempt}); again`);
    }
  }
  step(`breakpoint set on line ${line}`);
  await page.keyboard.press('Control+Home'); // the cursor leaves the line: the stop must move it back

  // Select the launch configuration and start it.
  await command('Debug: Select and Start Debugging');
  await page.locator('.quick-input-list .monaco-list-row', { hasText: config }).first().click();
  if (pickNamespace) {
    // The extension's picker: namespace, then pod (one container: no third question).
    for (const [title, answer] of [['kdap: namespace', pickNamespace], [`kdap: pod in ${pickNamespace}`, pickPod]]) {
      await page.locator('.quick-input-widget .quick-input-title', { hasText: title }).waitFor({ timeout: 60_000 });
      await page.locator('.quick-input-widget input').fill(answer);
      await page.locator('.quick-input-list .monaco-list-row', { hasText: answer }).first().waitFor();
      await page.keyboard.press('Enter');
      step(`picked ${answer} in "${title}"`);
    }
  }
  console.log('STARTED');
  step(`started "${config}"`);

  // The stop, as the UI shows it: the call stack says why, the editor
  // marks the top frame's line and moves the cursor there.
  await page.locator('.debug-call-stack', { hasText: /Paused on breakpoint/i }).first().waitFor({ timeout: 120_000 });
  await page.locator('.monaco-editor .debug-top-stack-frame-line').first().waitFor({ timeout: 10_000 });
  const thread = await page.locator('.debug-call-stack .monaco-list-row', { hasText: /Paused on breakpoint/i }).first().innerText();
  const status = await page.locator('.statusbar-item', { hasText: /^Ln \d+, Col \d+/ }).first().innerText();
  const tab = (await page.locator('.tabs-container .tab.active').first().innerText()).replace(/\s+/g, '');
  step(`call stack: ${thread.replace(/\s+/g, ' ')}; editor: ${tab.trim()}, ${status}`);
  const m = /Ln (\d+)/.exec(status);
  await page.screenshot({ path: screenshot });
  console.log(`STOPPED ${tab.trim()} ${m ? m[1] : '?'}`);

  await command('Debug: Continue');
  await page.locator('.debug-call-stack', { hasText: /Paused on breakpoint/i }).first().waitFor({ state: 'detached', timeout: 20_000 }).catch(() => {});
  console.log('CONTINUED');
  await command('Debug: Disconnect');
  await page.waitForTimeout(1000);
} catch (e) {
  await page.screenshot({ path: screenshot.replace(/\.png$/, '-failure.png') }).catch(() => {});
  console.error(`ui: failed: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
