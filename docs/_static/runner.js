// The in-browser runner: every Python example on a page gets a "Run" button.
// Clicking it starts Python in the page (Pyodide, served by this site from
// _runtime/, nothing fetched elsewhere), installs the project's wheels, and runs
// the example -- after any earlier example of the page that has not run yet,
// since the examples of a page share one namespace, as they do under `make test`.
"use strict";
(function () {
  const script = document.currentScript;
  const runtimeURL = new URL("../_runtime/", script.src);
  let starting = null; // the promise of a ready runtime
  let namespace = null; // this page's Python namespace
  const blocks = [];

  function mark(name) {
    window.mkRunner.phases.push([name, Math.round(performance.now())]);
  }

  function progress(block, text, done, total) {
    block.status.textContent = text;
    if (total) {
      block.bar.hidden = false;
      block.bar.max = total;
      block.bar.value = done;
    }
  }

  async function loadScript(url) {
    await new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = url;
      s.onload = resolve;
      s.onerror = () => reject(new Error("could not load " + url));
      document.head.appendChild(s);
    });
  }

  async function fetchBytes(url) {
    const response = await fetch(url);
    if (!response.ok) throw new Error(url + ": HTTP " + response.status);
    return await response.arrayBuffer();
  }

  async function start(block) {
    const t0 = performance.now();
    const manifest = await (await fetch(new URL("manifest.json", runtimeURL))).json();
    const total = 3 + manifest.wheels.length;
    let step = 0;
    progress(block, "Starting Python in your browser: loading Pyodide " +
      manifest.pyodide_version + "…", step, total);
    await loadScript(new URL(manifest.pyodide, runtimeURL).href);
    mark("script");
    const pyodide = await globalThis.loadPyodide({
      indexURL: new URL("pyodide/", runtimeURL).href,
    });
    mark("pyodide");
    progress(block, "Python is up; installing the packages…", ++step, total);
    for (const wheel of manifest.wheels) {
      const name = wheel.split("/").pop();
      progress(block, "Installing " + name + "…", ++step, total);
      pyodide.unpackArchive(await fetchBytes(new URL(wheel, runtimeURL)), "wheel");
    }
    const runner = await (await fetch(new URL(manifest.runner, runtimeURL))).text();
    pyodide.FS.mkdirTree("/home/pyodide/mkdocs");
    pyodide.FS.writeFile("/home/pyodide/mkdocs/mk_runner.py", runner);
    pyodide.runPython("import sys; sys.path.insert(0, '/home/pyodide/mkdocs')");
    mark("wheels");
    progress(block, "Loading the runner…", ++step, total);
    const mod = pyodide.pyimport("mk_runner");
    mark("import");
    namespace = pyodide.globals.get("dict")();
    namespace.set("__name__", "__main__");
    progress(block, "Ready.", ++step, total);
    window.mkRunner.startupMs = Math.round(performance.now() - t0);
    return { pyodide, mod };
  }

  async function runBlock(rt, block) {
    block.output.hidden = false;
    block.output.dataset.state = "running";
    block.status.textContent = "Running…";
    await new Promise((r) => setTimeout(r, 0)); // let the page paint
    const t0 = performance.now();
    const got = rt.mod.run_example(block.source, namespace);
    const ok = rt.mod.matches_page(block.source, got);
    block.result.textContent = got === "" ? "(no output)" : got;
    block.bar.hidden = true;
    block.status.textContent = ok
      ? "Ran in " + Math.round(performance.now() - t0) + " ms" +
        (rt.mod.is_doctest(block.source) ? " — same output as the page shows." : ".")
      : "Ran, but the output differs from what the page shows.";
    block.output.dataset.state = ok ? "done" : "differs";
    block.ran = true;
  }

  async function onRun(index) {
    const block = blocks[index];
    for (const b of blocks) b.button.disabled = true;
    block.output.hidden = false;
    block.output.dataset.state = "starting";
    try {
      if (starting === null) starting = start(block);
      const rt = await starting;
      for (let i = 0; i <= index; i++) {
        if (!blocks[i].ran || i === index) await runBlock(rt, blocks[i]);
      }
      if (window.mkRunner.firstRunMs === null) {
        window.mkRunner.firstRunMs = Math.round(performance.now() - window.mkRunner.clickedAt);
      }
    } catch (err) {
      starting = null;
      block.output.dataset.state = "error";
      block.status.textContent = "Could not run the example: " + err;
    } finally {
      for (const b of blocks) b.button.disabled = false;
    }
  }

  // The example blocks of a document that get a Run button: [div, pre] pairs.
  function runnable(doc) {
    const selector = "div.highlight-python, div.highlight-pycon, div.highlight-python3";
    return Array.from(doc.querySelectorAll(selector))
      .filter((div) => !div.closest(".mk-norun") && div.querySelector("pre"))
      .map((div) => [div, div.querySelector("pre")]);
  }

  function decorate() {
    runnable(document).forEach(([div, pre]) => {
      const index = blocks.length;
      const bar = document.createElement("div");
      bar.className = "mk-run";
      const button = document.createElement("button");
      button.type = "button";
      button.className = "mk-run-button";
      button.textContent = "▶ Run";
      button.setAttribute("aria-label", "Run this example in your browser");
      const output = document.createElement("div");
      output.className = "mk-output";
      output.hidden = true;
      output.setAttribute("aria-live", "polite");
      const status = document.createElement("p");
      status.className = "mk-status";
      const progressBar = document.createElement("progress");
      progressBar.hidden = true;
      const result = document.createElement("pre");
      result.className = "mk-result";
      output.append(status, progressBar, result);
      bar.append(button);
      div.after(bar, output);
      const block = { source: pre.textContent, button, output, status, bar: progressBar, result, ran: false };
      blocks.push(block);
      button.addEventListener("click", () => {
        if (window.mkRunner.clickedAt === null) window.mkRunner.clickedAt = performance.now();
        onRun(index);
      });
    });
  }

  window.mkRunner = {
    blocks, startupMs: null, firstRunMs: null, clickedAt: null, phases: [],
    // For the site's tests: the sources a document's Run buttons would run, and
    // this page's runtime ({pyodide, mod}) once an example has started it.
    sources: (doc) => runnable(doc).map(([, pre]) => pre.textContent),
    runtime: () => starting,
  };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", decorate);
  } else {
    decorate();
  }
})();
