"""A stand-in ComfyUI for verify tests: `main.py` + `nodes.py` that load custom nodes and log exactly as
ComfyUI 0.3.64's `nodes.init_external_custom_nodes` / `load_custom_node` do (same messages, same
order, stderr, "%(message)s"), then exit under --quick-test-for-ci. No torch, about 30 ms."""

from __future__ import annotations

from pathlib import Path

MAIN = """\
import logging
import sys

# app/logger.py: the root logger writes bare messages to stderr; --verbose sets the level.
level = sys.argv[sys.argv.index("--verbose") + 1] if "--verbose" in sys.argv else "INFO"
logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
print("Checkpoint files will always be loaded safely.")
import nodes  # noqa: E402

nodes.init_external_custom_nodes()
if "--quick-test-for-ci" in sys.argv:
    sys.exit(0)
"""

NODES = """\
import importlib.util
import logging
import os
import sys
import time
import traceback

NODE_CLASS_MAPPINGS = {}


def get_module_name(module_path):
    base_path = os.path.basename(module_path)
    if os.path.isfile(module_path):
        base_path = os.path.splitext(base_path)[0]
    return base_path


def load_custom_node(module_path, ignore=set(), module_parent="custom_nodes"):
    if os.path.isfile(module_path):
        sys_module_name = os.path.splitext(module_path)[0]
    else:
        sys_module_name = module_path.replace(".", "_x_")
    try:
        logging.debug("Trying to load custom node {}".format(module_path))
        if os.path.isfile(module_path):
            module_spec = importlib.util.spec_from_file_location(sys_module_name, module_path)
        else:
            module_spec = importlib.util.spec_from_file_location(
                sys_module_name, os.path.join(module_path, "__init__.py")
            )
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[sys_module_name] = module
        module_spec.loader.exec_module(module)
        if getattr(module, "NODE_CLASS_MAPPINGS", None) is not None:
            NODE_CLASS_MAPPINGS.update(module.NODE_CLASS_MAPPINGS)
            return True
        logging.warning(
            f"Skip {module_path} module for custom nodes due to the lack of NODE_CLASS_MAPPINGS or "
            "NODES_LIST (need one)."
        )
        return False
    except Exception as e:
        logging.warning(traceback.format_exc())
        logging.warning(f"Cannot import {module_path} module for custom nodes: {e}")
        return False


def init_external_custom_nodes():
    custom_node_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "custom_nodes")
    node_import_times = []
    possible_modules = os.listdir(os.path.realpath(custom_node_path))
    if "__pycache__" in possible_modules:
        possible_modules.remove("__pycache__")
    for possible_module in possible_modules:
        module_path = os.path.join(custom_node_path, possible_module)
        if os.path.isfile(module_path) and os.path.splitext(module_path)[1] != ".py":
            continue
        if module_path.endswith(".disabled"):
            continue
        time_before = time.perf_counter()
        success = load_custom_node(module_path)
        node_import_times.append((time.perf_counter() - time_before, module_path, success))
    if len(node_import_times) > 0:
        logging.info("\\nImport times for custom nodes:")
        for n in sorted(node_import_times):
            import_message = "" if n[2] else " (IMPORT FAILED)"
            logging.info("{:6.1f} seconds{}: {}".format(n[0], import_message, n[1]))
        logging.info("")
"""


def install_standin(root: Path) -> Path:
    """Make `root` (a `comfy` fixture folder) a ComfyUI whose loader verify can run."""
    (root / "main.py").write_text(MAIN)
    (root / "nodes.py").write_text(NODES)
    return root
