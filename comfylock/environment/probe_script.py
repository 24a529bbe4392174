"""The script comfylock runs inside the target interpreter (see environment.probe).

It is _envscan.py's source (what is installed, from the folders) followed by the facts only the target
can tell: its version and platform, its sys.path and its own site folders. It runs on Python 3.8+,
possibly the embedded Windows build. The JSON is ASCII (json's default), so decoding stdout with
comfylock's locale encoding is safe; it is the last line so a noisy sitecustomize printing first
cannot break parsing.
"""

from __future__ import annotations

from pathlib import Path

_FACTS = """
import json, sys, sysconfig
_paths = [os.path.abspath(p or ".") for p in sys.path]
_own = []
for _key in ("purelib", "platlib"):
    _folder = os.path.realpath(sysconfig.get_paths()[_key])
    if _folder not in _own:
        _own.append(_folder)
# Folders site.py would add once they exist (it skips missing ones): watched by comfylock's cache.
_site = sys.modules.get("site")
_candidates = list(_site.getsitepackages()) if _site and hasattr(_site, "getsitepackages") else []
if sys.platform == "win32":
    import platform
    _machine = platform.machine()
else:
    _machine = os.uname().machine
print()
print(json.dumps(dict(
    scan(_paths, _own),
    version="%d.%d.%d" % sys.version_info[:3],
    implementation=sys.implementation.name,
    sys_platform=sys.platform,
    machine=_machine,
    paths=_paths,
    own=_own,
    prefix=os.path.realpath(sys.prefix),
    candidates=[os.path.abspath(c) for c in _candidates],
    base=os.path.realpath(getattr(sys, "_base_executable", sys.executable)),
)))
"""

PROBE_SCRIPT = Path(__file__).with_name("scan.py").read_text(encoding="utf-8") + _FACTS
