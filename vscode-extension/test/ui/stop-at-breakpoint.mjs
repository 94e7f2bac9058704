// Drives a real VS Code (code-server) in headless Chromium: opens the
// workspace, sets breakpoints from the editor, starts a launch configuration
// (or compound) through the kdap extension, and reads from the UI where the
// debugger stopped. Prints STARTED when the session is starting (the caller
// then sends the request that hits the breakpoints), STOPPED TAB LINE each
// time the UI shows a stop (it then continues), DONE after disconnecting.
// --pick NAMESPACE POD: the configuration names no target and the
// extension's picker is answered: namespace, then pod.
// --sessions N: how many sessions to disconnect at the end (a compound's).
// --shown TEXT: the call stack must show a row with TEXT at the first stop
// (a child session's name), scrolled to if need be.
// Usage: node stop-at-breakpoint.mjs URL FOLDER CONFIG SCREENSHOT
//          --bp FILE:LINE [--bp FILE:LINE …] [--stops N] [--sessions N] [--pick NAMESPACE POD] [--shown TEXT …]
import { chromium } from 'playwright-core';

const [url, folder, config, screenshot, ...rest] = process.argv.slice(2);
const breakpoints = [];
let stops = 1;
let sessions = 1;
let pickNamespace, pickPod;
const shown = [];
for (let i = 0; i < rest.length; i++) {
  if (rest[i] === '--bp') breakpoints.push(rest[++i]);
  else if (rest[i] === '--stops') stops = Number(rest[++i]);
  else if (rest[i] === '--sessions') sessions = Number(rest[++i]);
  else if (rest[i] === '--pick') [pickNamespace, pickPod] = [rest[++i], rest[++i]];
  else if (rest[i] === '--shown') shown.push(rest[++i]);
  else throw new Error(`unknown argument ${rest[i]}`);
}
const step = (what) => console.error(`ui: ${new Date().toISOString().slice(11, 23)} ${what}`); // UTC, as the agent logs
const shotFor = (n) => (n === 1 ? screenshot : screenshot.replace(/\.png$/, `-${n}.png`));

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
  const command = async (name, timeout = 30_000) => {
    await page.keyboard.press('F1');
    const input = page.locator('.quick-input-widget input');
    await input.waitFor({ state: 'visible' });
    await input.fill(`>${name}`);
    await page.locator('.quick-input-list .monaco-list-row', { hasText: name }).first().waitFor({ timeout });
    await page.keyboard.press('Enter');
  };

  // Open each file at its line with Quick Open ("main.go:22") and toggle a
  // breakpoint there. Panels that load late can take the focus: retry.
  for (const bp of breakpoints) {
    const [file, line] = bp.split(':');
    const base = file.split('/').pop();
    for (let attempt = 1; ; attempt++) {
      await page.keyboard.press('Control+P');
      const quick = page.locator('.quick-input-widget input');
      await quick.waitFor({ state: 'visible' });
      await quick.fill(`${file}:${line}`);
      await page.locator('.quick-input-list .monaco-list-row', { hasText: base }).first().waitFor();
      await page.keyboard.press('Enter');
      await page.locator('.tabs-container .tab.active', { hasText: base }).first().waitFor({ timeout: 10_000 });
      await page.locator('.statusbar-item', { hasText: `Ln ${line},` }).first().waitFor({ timeout: 10_000 });
      step(`opened ${file} at line ${line}`);
      const glyphs = page.locator('.editor-group-container.active .monaco-editor .codicon-debug-breakpoint');
      if (await glyphs.count() > 0) {
        break; // set in an earlier run: VS Code keeps breakpoints per workspace
      }
      await command('Debug: Toggle Breakpoint');
      try {
        await glyphs.first().waitFor({ timeout: 5_000 });
        break;
      } catch (e) {
        if (attempt === 3) throw e;
        step(`no breakpoint glyph yet (attempt ${attempt}); again`);
      }
    }
    step(`breakpoint set on ${file}:${line}`);
    await page.keyboard.press('Control+Home'); // the cursor leaves the line: the stop must move it back
  }

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

  // Each stop, as the UI shows it: the call stack says why, the editor
  // marks the top frame's line and moves the cursor there.
  // (Delve lists threads, one "PAUSED ON BREAKPOINT"; js-debug's one
  // thread shows its frames under the view's header "Paused on breakpoint".)
  const paused = page.getByText(/paused on breakpoint/i);
  const topFrame = page.locator('.monaco-editor .debug-top-stack-frame-line');
  const callStack = page.locator('.debug-call-stack');
  for (let n = 1; n <= stops; n++) {
    await topFrame.first().waitFor({ timeout: 120_000 });
    // The call stack renders only the rows in view: a JVM's stopped thread
    // comes after a dozen others, so scroll down until its reason shows.
    for (let i = 0; i < 20 && !(await paused.first().isVisible()); i++) {
      await callStack.first().hover();
      await page.mouse.wheel(0, 200);
      await page.waitForTimeout(250);
    }
    await paused.first().waitFor({ timeout: 10_000 });
    await page.waitForTimeout(300); // the editor moves the cursor to the frame
    const pausedRow = page.locator('.debug-call-stack .monaco-list-row', { hasText: /paused on breakpoint/i });
    const thread = await ((await pausedRow.count()) ? pausedRow : page.locator('.debug-call-stack .monaco-list-row')).first().innerText();
    const status = await page.locator('.statusbar-item', { hasText: /^Ln \d+, Col \d+/ }).first().innerText();
    const tab = (await page.locator('.tabs-container .tab.active').first().innerText()).replace(/\s+/g, '');
    step(`stop ${n}: call stack: ${thread.replace(/\s+/g, ' ')}; editor: ${tab.trim()}, ${status}`);
    if (n === 1) {
      for (const text of shown) {
        const row = page.locator('.debug-call-stack .monaco-list-row', { hasText: text });
        for (let i = 0; i < 20 && !(await row.first().isVisible()); i++) {
          await callStack.first().hover();
          await page.mouse.wheel(0, i < 10 ? -200 : 200);
          await page.waitForTimeout(250);
        }
        await row.first().waitFor({ timeout: 10_000 });
        step(`the call stack shows "${(await row.first().innerText()).replace(/\s+/g, ' ')}"`);
      }
    }
    const m = /Ln (\d+)/.exec(status);
    await page.screenshot({ path: shotFor(n) });
    console.log(`STOPPED ${tab.trim()} ${m ? m[1] : '?'}`);
    await command('Debug: Continue');
    await topFrame.first().waitFor({ state: 'detached', timeout: 20_000 }).catch(() => {});
  }
  // Disconnect every session (a compound's configurations are one each).
  for (let i = 0; i < sessions; i++) {
    try {
      await command('Debug: Disconnect', i === 0 ? 30_000 : 3_000);
    } catch (e) {
      await page.keyboard.press('Escape');
      break; // stopAll ended the compound's other sessions with the first
    }
    await page.waitForTimeout(1000);
  }
  console.log('DONE');
} catch (e) {
  await page.screenshot({ path: screenshot.replace(/\.png$/, '-failure.png') }).catch(() => {});
  console.error(`ui: failed: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
