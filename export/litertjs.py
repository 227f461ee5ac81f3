"""The LiteRT.js runtime vendored for `tfvae export --web`, and the script that refreshes it from npm.

The web page runs the decoder with LiteRT.js (`@litertjs/core`, the web
runtime of LiteRT, WebAssembly on the CPU). Its files are committed in the
package under `web_assets/third_party/litertjs/` (code by others, byte for
byte as npm ships it) and copied into every `OUT/web/litertjs/`, so an export
needs no node, no npm and no network, and the page loads nothing from
elsewhere. `litertjs.json` beside them records the npm packages, their
registry integrity strings and each file's sha256.

    web_assets/third_party/litertjs/
      LICENSE                         Apache-2.0, the licence of both npm packages
      litertjs.json                   versions, integrity, sha256 of every file below
      core/index.js                   @litertjs/core dist/index.js (an ES module)
      wasm-utils/index.js             @litertjs/wasm-utils dist/index.js, imported by core as a bare specifier
      wasm/litert_wasm_internal.*     the WebAssembly build for browsers with relaxed SIMD
      wasm/litert_wasm_compat_internal.*  the build for browsers without it

Only the two single-threaded, non-JSPI builds are vendored: the threaded
build needs SharedArrayBuffer, which a plain static server (no COOP/COEP
headers) does not give, and JSPI is needed only for WebNN and GPU
partitioning, which the page does not use.

To move to another release (needs npm and the registry):

    python -m tfvae.export.litertjs --version 2.5.3

run from a source checkout (an editable install), then commit the changed
files under `export/web_assets/third_party/litertjs/`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tarfile
import tempfile

from tfvae.io import file_sha256

__all__ = ["ASSETS_DIR", "RUNTIME_DIR", "RUNTIME_FILES", "runtime_info", "vendor"]

ASSETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web_assets")
RUNTIME_DIR = os.path.join(ASSETS_DIR, "third_party", "litertjs")  # vendored: other people's code, unchanged
INFO_FILE = "litertjs.json"
LICENSE_FILE = "LICENSE"

CORE = "@litertjs/core"
WASM_UTILS = "@litertjs/wasm-utils"
# Vendored file (relative to RUNTIME_DIR) -> (npm package, path inside its tarball).
RUNTIME_FILES = {
    "core/index.js": (CORE, "package/dist/index.js"),
    "wasm-utils/index.js": (WASM_UTILS, "package/dist/index.js"),
    "wasm/litert_wasm_internal.js": (CORE, "package/wasm/litert_wasm_internal.js"),
    "wasm/litert_wasm_internal.wasm": (CORE, "package/wasm/litert_wasm_internal.wasm"),
    "wasm/litert_wasm_compat_internal.js": (CORE, "package/wasm/litert_wasm_compat_internal.js"),
    "wasm/litert_wasm_compat_internal.wasm": (CORE, "package/wasm/litert_wasm_compat_internal.wasm"),
}


def runtime_info() -> dict:
    """The contents of `litertjs.json`: {"packages": {name: {"version", "integrity", "license"}}, "files": {path: sha256}}."""
    with open(os.path.join(RUNTIME_DIR, INFO_FILE), encoding="utf-8") as f:
        return json.load(f)


def _npm(*args: str, cwd: str) -> str:
    return subprocess.run(["npm", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def vendor(version: str, target: str = RUNTIME_DIR) -> dict:
    """Fetch `@litertjs/core@version` and the `@litertjs/wasm-utils` it depends on with `npm pack`; copy RUNTIME_FILES.

    Returns the new `litertjs.json` contents. The licence file is kept
    unless a package ships its own (2.5.3 ships none; its package.json says
    Apache-2.0, whose text is LICENSE).
    """
    with tempfile.TemporaryDirectory() as scratch:
        dependencies = json.loads(_npm("view", f"{CORE}@{version}", "dependencies", "--json", cwd=scratch))
        versions = {CORE: version, WASM_UTILS: dependencies[WASM_UTILS].lstrip("^~=")}
        packages, tarballs = {}, {}
        for name, wanted in versions.items():
            spec = f"{name}@{wanted}"
            (packed,) = json.loads(_npm("pack", spec, "--json", cwd=scratch))
            packages[name] = {"version": packed["version"], "integrity": packed["integrity"],
                              "license": json.loads(_npm("view", spec, "license", "--json", cwd=scratch))}
            tarballs[name] = tarfile.open(os.path.join(scratch, packed["filename"]))
        os.makedirs(target, exist_ok=True)
        for relative, (name, member) in RUNTIME_FILES.items():
            path = os.path.join(target, relative)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with tarballs[name].extractfile(member) as source, open(path, "wb") as f:
                shutil.copyfileobj(source, f)
        for name, tarball in tarballs.items():
            licences = [m for m in tarball.getnames() if os.path.basename(m).upper().startswith(("LICENSE", "LICENCE"))]
            if licences:
                with tarball.extractfile(licences[0]) as source, open(os.path.join(target, LICENSE_FILE), "wb") as f:
                    shutil.copyfileobj(source, f)
            tarball.close()
    info = {
        "packages": packages,
        "files": {relative: file_sha256(os.path.join(target, relative)) for relative in sorted(RUNTIME_FILES)},
        "refresh": f"python -m tfvae.export.litertjs --version {version}",
    }
    with open(os.path.join(target, INFO_FILE), "w", encoding="utf-8") as f:
        f.write(json.dumps(info, indent=2) + "\n")
    return info


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Refresh the vendored LiteRT.js runtime from the npm registry.")
    parser.add_argument("--version", required=True, help="the @litertjs/core release, e.g. 2.5.3")
    parser.add_argument("--target", default=RUNTIME_DIR, help="where to write the files [default: %(default)s]")
    args = parser.parse_args(argv)
    info = vendor(args.version, args.target)
    for name, package in info["packages"].items():
        print(f"{name} {package['version']} ({package['license']})")
    print(f"wrote {len(info['files'])} files to {args.target}")


if __name__ == "__main__":
    main()
