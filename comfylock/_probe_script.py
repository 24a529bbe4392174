"""The script comfylock runs inside the target interpreter (see workspace.probe_target)."""

# Runs inside the target interpreter (Python 3.8+, possibly the embedded Windows build). The JSON is
# ASCII (json's default), so decoding stdout with comfylock's locale encoding is safe; it is the last
# line so a noisy sitecustomize printing first cannot break parsing.
PROBE_SCRIPT = """\
import json, os, re, sys
# Installed distributions from their *.dist-info / *.egg-info folder names, first on sys.path winning
# as it does for import. Not importlib.metadata: importing it and parsing every METADATA file costs
# more than the whole rest of a no-op compile. Only a folder name without a version is opened.
installed, site_dirs, opened = {}, [], []
for folder in sys.path:
    try:
        entries = sorted(os.listdir(folder or "."))
    except OSError:
        continue
    site_dirs.append(os.path.abspath(folder or "."))
    for entry in entries:
        stem, dot, kind = entry.rpartition(".")
        if kind not in ("dist-info", "egg-info"):
            continue
        name, _, rest = stem.partition("-")
        version = rest.split("-")[0]
        if not version:
            fields = {}
            for meta in ("METADATA", "PKG-INFO"):
                try:
                    opened.append(os.path.abspath(os.path.join(folder, entry, meta)))
                    with open(os.path.join(folder, entry, meta), encoding="utf-8", errors="replace") as f:
                        for line in f:
                            if not line.strip():
                                break
                            key, _, value = line.partition(":")
                            fields.setdefault(key.strip(), value.strip())
                    break
                except OSError:
                    continue
            name, version = fields.get("Name", ""), fields.get("Version", "")
        if name and version:
            installed.setdefault(re.sub(r"[-_.]+", "-", name).lower(), version)
# The environment's own folders, where uv installs and which `uv pip freeze` lists: when every
# distribution there is a plain registry install, its `name==version` lines are the freeze, and sync
# spares a `uv pip freeze` run. Anything such a line cannot say (a URL, VCS or editable install, a
# legacy egg, two versions of one name, a version not in normal form) leaves "frozen" null.
import sysconfig
frozen, names, seen = [], set(), set()
normal = re.compile(  # PEP 440's normal form, as installers name the folder
    "(?:[0-9]+!)?[0-9]+(?:[.][0-9]+)*(?:(?:a|b|rc)[0-9]+)?(?:[.]post[0-9]+)?(?:[.]dev[0-9]+)?"
    "(?:[+][a-z0-9]+(?:[.][a-z0-9]+)*)?"
)
for key in ("purelib", "platlib"):
    own = os.path.realpath(sysconfig.get_paths()[key])
    if frozen is None or own in seen:
        continue
    seen.add(own)
    try:
        entries = sorted(os.listdir(own))
    except OSError:
        continue
    for entry in entries:
        stem, dot, kind = entry.rpartition(".")
        if kind == "egg-link" or kind == "egg-info" or entry.startswith("__editable__"):
            frozen = None
            break
        if kind != "dist-info":
            continue
        name, _, version = stem.partition("-")
        name = re.sub(r"[-_.]+", "-", name).lower()
        if (
            not normal.fullmatch(version) or name in names
            or os.path.exists(os.path.join(own, entry, "direct_url.json"))
        ):
            frozen = None
            break
        names.add(name)
        frozen.append(name + "==" + version)
if sys.platform == "win32":
    import platform
    machine = platform.machine()
else:
    machine = os.uname().machine
print()
print(json.dumps({
    "version": "%d.%d.%d" % sys.version_info[:3],
    "implementation": sys.implementation.name,
    "sys_platform": sys.platform,
    "machine": machine,
    "installed": installed,
    "site_dirs": site_dirs,
    # What the answer came from, for comfylock's cache of it (see _probecache).
    "paths": [os.path.abspath(p or ".") for p in sys.path],
    "opened": opened,
    "base": os.path.realpath(getattr(sys, "_base_executable", sys.executable)),
    "frozen": None if frozen is None else sorted(frozen),
}))
"""
