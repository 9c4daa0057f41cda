"""Checks the Cortex-M objects of the kernel core and prints their code size per op family.

Usage: core_report.py [--tool-prefix arm-none-eabi-] TARGET=OBJECT_DIR...
(OBJECT_DIR holds one folder per op family, as kernels/core does.)

The check fails (exit 1, one line per problem) when an object
  - calls anything outside ALLOWED_EXTERNALS: heap allocation, C++ exception or RTTI support, float64
    helpers or libm's double functions, I/O; every such call is named with its category;
  - contains a float64 (.f64) instruction (the M7's FPU has them, so no helper call would show it);
  - has writable static data (.data, .bss) or a static constructor: kernels keep no global state.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

# What the core may call: memcpy, single-precision libm, and the EABI helper converting a float to
# int64 (SGD's saturating step), which Cortex-M has no instruction for.
ALLOWED_EXTERNALS = {
    "memcpy",
    "__aeabi_memcpy",
    "memmove",  # the tiled stage moves the rows one band shares with the next to the top of its patch
    "__aeabi_memmove",
    "memset",  # zero-initialized local arrays
    "__aeabi_memset",
    "__aeabi_memclr",
    "__aeabi_memclr4",
    "floorf",
    "roundf",
    "lroundf",
    "fmaxf",
    "fminf",
    "fabsf",
    "__aeabi_f2lz",
}

FORBIDDEN = [
    (re.compile(r"^(malloc|calloc|realloc|free|_Zn[wa]|_Zd[la])"), "heap allocation"),
    (re.compile(r"^(__cxa_|_Unwind_|__gxx_personality|__aeabi_unwind)"), "C++ exception support"),
    (re.compile(r"^(_ZTI|_ZTS|__dynamic_cast)"), "RTTI"),
    # EABI double helpers (__aeabi_dadd, __aeabi_f2d, __aeabi_i2d, ...) and libm's double functions.
    (
        re.compile(r"^(__aeabi_(d\w+|f2d|u?i2d|u?l2d)|(exp|log|pow|sqrt|floor|ceil|l?round|fabs|fmax|fmin|sin|cos|tanh))$"),
        "float64",
    ),
]

TARGET_NAMES = {"m4": "Cortex-M4F", "m7": "Cortex-M7", "m55": "Cortex-M55"}


def tool(prefix: str, name: str, *args: str) -> str:
    return subprocess.run([prefix + name, *args], check=True, capture_output=True, text=True).stdout


def symbols(prefix: str, obj: Path, which: str) -> list[str]:
    return [line.split()[0] for line in tool(prefix, "nm", which, "--format=posix", str(obj)).splitlines() if line.strip()]


def section_sizes(prefix: str, obj: Path) -> dict[str, int]:
    sizes = {}
    for line in tool(prefix, "size", "-A", str(obj)).splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].startswith(".") and fields[1].isdigit():
            sizes[fields[0]] = int(fields[1])
    return sizes


def problems(prefix: str, obj: Path, defined_anywhere: set[str]) -> list[str]:
    found = []
    for symbol in symbols(prefix, obj, "--undefined-only"):
        if symbol in ALLOWED_EXTERNALS or symbol in defined_anywhere:
            continue
        category = next((what for pattern, what in FORBIDDEN if pattern.search(symbol)), "not in ALLOWED_EXTERNALS")
        found.append(f"calls {symbol} ({category})")
    f64 = [word for line in tool(prefix, "objdump", "-d", str(obj)).splitlines() for word in line.split() if ".f64" in word]
    if f64:
        found.append(f"has {len(f64)} float64 instructions ({', '.join(sorted(set(f64)))})")
    for section, size in section_sizes(prefix, obj).items():
        if size and (section.startswith((".data", ".bss")) or section.startswith((".init_array", ".ctors"))):
            found.append(f"has {size} bytes of {section} (global state or a static constructor)")
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tool-prefix", default="arm-none-eabi-")
    parser.add_argument("targets", nargs="+", metavar="TARGET=OBJECT_DIR")
    args = parser.parse_args(argv)
    code = defaultdict(dict)  # family -> target -> bytes
    functions = defaultdict(set)  # family -> public functions
    errors = []
    targets = [spec.split("=", 1) for spec in args.targets]
    for target, directory in targets:
        objects = sorted(Path(directory).glob("*/*.o"))
        if not objects:
            print(f"error: no objects under {directory}", file=sys.stderr)
            return 1
        defined = {obj: symbols(args.tool_prefix, obj, "--defined-only") for obj in objects}
        defined_anywhere = set().union(*defined.values())
        for obj in objects:
            family = obj.parent.name
            errors += [f"error: {target} {family}/{obj.name}: {p}" for p in problems(args.tool_prefix, obj, defined_anywhere)]
            sizes = section_sizes(args.tool_prefix, obj)
            code_bytes = sum(size for section, size in sizes.items() if section.startswith((".text", ".rodata")))
            code[family][target] = code[family].get(target, 0) + code_bytes
            functions[family].update(s for s in defined[obj] if s.startswith("tt_"))
    for error in errors:
        print(error, file=sys.stderr)
    if errors:
        return 1
    names = [TARGET_NAMES.get(target, target) for target, _ in targets]
    print("Kernel core: no heap, exceptions, RTTI, global state or float64 on " + ", ".join(names) + ".")
    print("Code size (.text + .rodata bytes, -O2, per family before linking):\n")
    print("| op family | functions | " + " | ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for family in sorted(code):
        print(f"| {family} | {len(functions[family])} | " + " | ".join(str(code[family][t]) for t, _ in targets) + " |")
    totals = [str(sum(code[f][t] for f in code)) for t, _ in targets]
    print(f"| total | {sum(len(f) for f in functions.values())} | " + " | ".join(totals) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
