#!/usr/bin/env node
// Compiles every contracts/src/*.sol with the pinned solcjs (npm package `solc`) and writes
// chains/devnet/artifacts/<ContractName>.json = {"abi", "bytecode", "contractName"}.
//
// Output is deterministic: sources are read in sorted order, settings are fixed (optimizer 200 runs,
// evmVersion cancun), the metadata hash is not appended (bytecodeHash "none", so the bytecode does not
// depend on file paths or comments' hashes), and JSON is written with recursively sorted object keys,
// 2-space indent and a trailing newline. Running it twice yields byte-identical files.
//
// Usage: node contracts/build.js          (write artifacts)
//        node contracts/build.js --check  (exit 1 if any committed artifact differs from a fresh build)
"use strict";

const fs = require("fs");
const path = require("path");
const solc = require("solc");

const ROOT = path.resolve(__dirname, "..");
const SRC_DIR = path.join(__dirname, "src");
const OUT_DIR = path.join(ROOT, "chains", "devnet", "artifacts");

function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === "object") {
    const out = {};
    for (const key of Object.keys(value).sort()) out[key] = sortKeys(value[key]);
    return out;
  }
  return value;
}

function compile() {
  const files = fs.readdirSync(SRC_DIR).filter((f) => f.endsWith(".sol")).sort();
  if (files.length === 0) throw new Error(`no .sol files in ${SRC_DIR}`);
  const sources = {};
  for (const file of files) {
    sources[`src/${file}`] = { content: fs.readFileSync(path.join(SRC_DIR, file), "utf8") };
  }
  const input = {
    language: "Solidity",
    sources,
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion: "cancun",
      metadata: { bytecodeHash: "none" },
      outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  for (const diag of output.errors || []) process.stderr.write(diag.formattedMessage || diag.message);
  if (errors.length > 0) throw new Error(`solc ${solc.version()} reported ${errors.length} error(s)`);

  const artifacts = new Map();
  for (const sourceName of Object.keys(output.contracts).sort()) {
    const contracts = output.contracts[sourceName];
    for (const contractName of Object.keys(contracts).sort()) {
      if (artifacts.has(contractName)) throw new Error(`duplicate contract name ${contractName}`);
      const bytecode = contracts[contractName].evm.bytecode.object;
      if (!bytecode) continue; // interfaces and abstract contracts have no deployable code
      const artifact = sortKeys({ contractName, abi: contracts[contractName].abi, bytecode: `0x${bytecode}` });
      artifacts.set(contractName, `${JSON.stringify(artifact, null, 2)}\n`);
    }
  }
  return artifacts;
}

function main() {
  const check = process.argv.includes("--check");
  const artifacts = compile();
  let stale = 0;
  if (!check) fs.mkdirSync(OUT_DIR, { recursive: true });
  for (const [name, text] of artifacts) {
    const file = path.join(OUT_DIR, `${name}.json`);
    const current = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : null;
    if (current === text) continue;
    if (check) {
      process.stderr.write(`stale artifact: ${path.relative(ROOT, file)}\n`);
      stale += 1;
    } else {
      fs.writeFileSync(file, text);
      process.stdout.write(`wrote ${path.relative(ROOT, file)}\n`);
    }
  }
  if (stale > 0) {
    process.stderr.write("run `node contracts/build.js` and commit the artifacts\n");
    process.exit(1);
  }
  process.stdout.write(`solc ${solc.version()}: ${artifacts.size} artifact(s) ${check ? "up to date" : "built"}\n`);
}

main();
