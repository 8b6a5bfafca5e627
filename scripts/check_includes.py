#!/usr/bin/env python3
"""check_includes.py: checks the source tree against the include map of
docs/architecture.md (the one place that says which folder may include which).

Usage: check_includes.py [SOURCE_ROOT]    exit 0 clean, 1 violations, 2 no usable map
       check_includes.py --self-test      runs the checker on small fake trees

Rules (each violation is printed as `file:line: what: rule`):
  layer      a core folder includes only headers of its own folder or of folders
             with a lower rank in the map (include/prunus/ is rank 0);
  uses       a core .c file calls no function defined in a higher folder (an
             extern declaration would otherwise hide the upward dependency);
  consumer   cli/, plugins/, examples/, tests/, bench/ include only what the map's
             consumer table lists for them;
  header-cycle  no header includes itself through other headers;
  module-cycle  no two modules depend on each other; a module is x.c + x.h of one
             folder, and A depends on B when a file of A includes B's header or
             A's .c uses a function or variable B's .c defines;
  resolve    every quoted include names one file of the tree (a bare header name
             matches at most one core folder, so the build cannot pick the wrong one);
  map        every folder of core/ is in the map, and meson.build's core_folders
             (the include path) lists the same folders.
Python 3 standard library only.
"""

import os
import re
import sys
import tempfile

MAP_DOC = "docs/architecture.md"
LAYERS_BEGIN, LAYERS_END = "<!-- include-map:layers -->", "<!-- /include-map:layers -->"
CONSUMERS_BEGIN, CONSUMERS_END = "<!-- include-map:consumers -->", "<!-- /include-map:consumers -->"

SCANNED_TREES = ("core", "include", "cli", "plugins", "examples", "tests", "bench")
SOURCE_EXTS = (".c", ".h")

INCLUDE_RE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*([<"])([^>"\n]+)[>"]', re.M)
IDENT_RE = re.compile(r"\b[A-Za-z_]\w*\b")
ATTRIBUTE_RE = re.compile(r"__attribute__\s*\(\((?:[^()]|\([^()]*\))*\)\)")


class MapError(Exception):
    """The map in docs/architecture.md is missing or malformed."""


# ---------------------------------------------------------------------------
# the map


def _block(text, begin, end, doc):
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        raise MapError(f"{doc}: no table between '{begin}' and '{end}'")
    first_line = text.count("\n", 0, i) + 1
    return text[i + len(begin):j], first_line


def _table_rows(block, first_line):
    """(line number, [cells]) of each body row of a markdown table."""
    rows = []
    for k, line in enumerate(block.split("\n")):
        s = line.strip()
        if not s.startswith("|"):
            continue
        cells = [c.strip() for c in s.strip("|").split("|")]
        if all(re.fullmatch(r":?-+:?", c) for c in cells if c):
            continue  # the |---|---| separator
        rows.append((first_line + k, cells))
    return rows[1:]  # the first row is the header


def _ticked(cell):
    return re.findall(r"`([^`]+)`", cell)


class IncludeMap:
    """Ranked folders (core/* and include/prunus) and the consumer trees' allowances."""

    def __init__(self, root):
        doc = os.path.join(root, MAP_DOC)
        try:
            with open(doc, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise MapError(f"{MAP_DOC}: cannot read the include map: {e.strerror}")
        self.rank = {}  # "core/base" -> 1
        block, line0 = _block(text, LAYERS_BEGIN, LAYERS_END, MAP_DOC)
        for line, cells in _table_rows(block, line0):
            paths = _ticked(cells[1]) if len(cells) > 1 else []
            if len(cells) < 2 or not cells[0].isdigit() or len(paths) != 1:
                raise MapError(f"{MAP_DOC}:{line}: a layer row is `| rank | `folder/` | ... |`, "
                               f"found '{' | '.join(cells)}'")
            folder = paths[0].strip("/")
            if folder in self.rank:
                raise MapError(f"{MAP_DOC}:{line}: folder {folder}/ is listed twice")
            self.rank[folder] = int(cells[0])
        if not self.rank:
            raise MapError(f"{MAP_DOC}:{line0}: the layer table has no rows")
        self.consumers = {}  # "tests" -> ["core/", "include/prunus/", "tests/"]
        block, line0 = _block(text, CONSUMERS_BEGIN, CONSUMERS_END, MAP_DOC)
        for line, cells in _table_rows(block, line0):
            trees = _ticked(cells[0]) if cells else []
            allowed = _ticked(cells[1]) if len(cells) > 1 else []
            if len(trees) != 1 or not allowed:
                raise MapError(f"{MAP_DOC}:{line}: a consumer row is `| `tree/` | `path` ... | ... |`, "
                               f"found '{' | '.join(cells)}'")
            self.consumers[trees[0].strip("/")] = allowed

    def core_folders(self):
        """core/ subfolders in rank order."""
        return [f for f in sorted(self.rank, key=self.rank.get) if f.startswith("core/")]

    def layer_of(self, rel):
        d = os.path.dirname(rel)
        return d if d in self.rank else None

    def consumer_of(self, rel):
        top = rel.split("/", 1)[0]
        return top if top in self.consumers else None


# ---------------------------------------------------------------------------
# reading C sources


def split_source(text):
    """(text without comments, text without comments and string/char literals);
    both keep every newline, so offsets map to the same line numbers."""
    no_comments, no_literals = [], []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            blank = "\n" * text.count("\n", i, j) or " "
            no_comments.append(blank)
            no_literals.append(blank)
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            no_comments.append(text[i:j])
            no_literals.append(c + c)
            i = j
        else:
            no_comments.append(c)
            no_literals.append(c)
            i += 1
    return "".join(no_comments), "".join(no_literals)


def _blank_directives(code):
    """Preprocessor lines (with continuations) replaced by their newlines."""
    return re.sub(r"(?m)^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", lambda m: "\n" * m.group(0).count("\n"), code)


def _line_at(text, pos):
    return text.count("\n", 0, pos) + 1


def global_definitions(code):
    """{name: line} of the non-static functions and variables a .c file defines
    at file scope (code: comments and literals removed)."""
    code = _blank_directives(code)
    defs = {}
    depth, start = 0, 0

    def chunk_definition(end, braced):
        chunk = ATTRIBUTE_RE.sub(lambda m: " " * len(m.group(0)), code[start:end])
        if re.search(r"\b(static|typedef|extern)\b", chunk):
            return
        eq, paren = chunk.find("="), chunk.find("(")
        if eq >= 0 and (paren < 0 or eq < paren):  # variable with an initializer
            m = re.search(r"(\w+)\s*(?:\[[^\]]*\]\s*)*$", chunk[:eq])
        elif paren >= 0 and braced:  # function definition: the name before the last (...)
            close = chunk.rfind(")")
            level, i = 0, close
            while i >= 0:
                level += {")": 1, "(": -1}.get(chunk[i], 0)
                if level == 0:
                    break
                i -= 1
            m = re.search(r"(\w+)\s*$", chunk[:max(i, 0)])
        elif paren < 0 and not braced:  # variable without initializer: `int x;`
            if re.search(r"\b(struct|union|enum)\s+\w+\s*$", chunk):
                return  # a forward declaration, not a variable
            m = re.search(r"\w[\w\s\*]*?\b(\w+)\s*(?:\[[^\]]*\]\s*)*$", chunk)
        else:
            return
        if m and not re.fullmatch(r"\s*", chunk[: m.start(1)]):  # a type precedes the name
            defs.setdefault(m.group(1), _line_at(code, start + m.start(1)))

    for pos, ch in enumerate(code):
        if ch == "{":
            if depth == 0:
                chunk_definition(pos, braced=True)
            depth += 1
        elif ch == "}":
            depth = max(depth - 1, 0)
            if depth == 0:
                start = pos + 1
        elif ch == ";" and depth == 0:
            chunk_definition(pos, braced=False)
            start = pos + 1
    return defs


class Source:
    def __init__(self, root, rel):
        self.rel = rel
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            text = f.read()
        no_comments, self.code = split_source(text)
        self.includes = [(_line_at(no_comments, m.start()), m.group(1) == "<", m.group(2).strip())
                         for m in INCLUDE_RE.finditer(no_comments)]

    def first_uses(self, names):
        """{name: line} of the first use of each of names in the code."""
        found = {}
        code = _blank_directives(self.code)
        for m in IDENT_RE.finditer(code):
            w = m.group(0)
            if w in names and w not in found:
                found[w] = _line_at(code, m.start())
        return found


def module_of(rel):
    """"core/nn/model.c" -> "core/nn/model": x.c, x.h and x-impl.h (the contract x's
    own .c files share, STYLE.md) of one folder are one module."""
    stem = os.path.splitext(rel)[0]
    return stem[: -len("-impl")] if stem.endswith("-impl") else stem


# ---------------------------------------------------------------------------
# the check


class Checker:
    def __init__(self, root):
        self.root = os.path.abspath(root)
        self.map = IncludeMap(self.root)
        self.violations = []  # (file, line, message)
        self.sources = {}
        for tree in SCANNED_TREES:
            base = os.path.join(self.root, tree)
            for d, subdirs, names in os.walk(base):
                subdirs.sort()
                for name in sorted(names):
                    if name.endswith(SOURCE_EXTS):
                        rel = os.path.relpath(os.path.join(d, name), self.root).replace(os.sep, "/")
                        self.sources[rel] = Source(self.root, rel)
        self.n_includes = 0

    def add(self, rel, line, message):
        self.violations.append((rel, line, message))

    def exists(self, rel):
        return rel in self.sources or os.path.isfile(os.path.join(self.root, rel))

    # -- the map against the tree ------------------------------------------

    def check_map(self):
        core = os.path.join(self.root, "core")
        on_disk = sorted(d for d in os.listdir(core) if os.path.isdir(os.path.join(core, d))) \
            if os.path.isdir(core) else []
        in_map = self.map.core_folders()
        for d in on_disk:
            if "core/" + d not in self.map.rank:
                self.add(MAP_DOC, 0, f"core/{d}/ is not in the include map: map: give every core "
                         "folder a rank in the layer table")
        for f in self.map.rank:
            if not os.path.isdir(os.path.join(self.root, f)):
                self.add(MAP_DOC, 0, f"the include map lists {f}/, which does not exist: map")
        meson = os.path.join(self.root, "meson.build")
        try:
            with open(meson, encoding="utf-8") as fh:
                text = fh.read()
        except OSError:
            return
        m = re.search(r"^core_folders\s*=\s*\[([^\]]*)\]", text, re.M)
        if not m:
            self.add("meson.build", 0, "no `core_folders = [...]` list: map: the include path "
                     "must name the map's core folders")
            return
        listed = re.findall(r"'([^']+)'", m.group(1))
        want = [f.split("/", 1)[1] for f in in_map]
        if sorted(listed) != sorted(want):
            self.add("meson.build", _line_at(text, m.start()),
                     f"core_folders {listed} differs from the include map's core folders {want}: map")

    # -- resolving ---------------------------------------------------------

    def resolve(self, src, line, angle, name):
        """The tree-relative path an include names, None for a system header, or
        False (after reporting) when a quoted include names no file."""
        if angle:
            if not name.startswith("prunus/"):
                return None
            target = "include/" + name
            if self.exists(target):
                return target
            self.add(src, line, f"includes <{name}>, which is not in include/prunus/: resolve")
            return False
        here = os.path.normpath(os.path.join(os.path.dirname(src), name)).replace(os.sep, "/")
        if self.exists(here):
            return here
        top = src.split("/", 1)[0]
        if top in ("tests", "bench") and self.exists(f"{top}/{name}"):
            return f"{top}/{name}"  # Meson puts the defining meson.build's folder on the path
        hits = [f"{f}/{name}" for f in self.map.core_folders() if self.exists(f"{f}/{name}")]
        if len(hits) > 1:
            self.add(src, line, f'includes "{name}", which is in {len(hits)} core folders '
                     f"({', '.join(hits)}): resolve: a header name must be unique across core/")
            return False
        if hits:
            return hits[0]
        if self.exists("include/" + name):
            return "include/" + name
        self.add(src, line, f'includes "{name}", which is no file of the tree: resolve')
        return False

    # -- per-include rules ---------------------------------------------------

    def check_includes(self):
        self.header_edges = {}  # header -> {header: line}
        self.include_edges = {}  # module -> {module: (file, line, text)}
        for rel in sorted(self.sources):
            src = self.sources[rel]
            layer = self.map.layer_of(rel)
            consumer = None if layer else self.map.consumer_of(rel)
            for line, angle, name in src.includes:
                self.n_includes += 1
                target = self.resolve(rel, line, angle, name)
                if not target:
                    continue
                shown = f"<{name}>" if angle else f'"{name}"'
                if layer:
                    self.check_layer(rel, line, shown, layer, target)
                    if target.startswith("core/") and module_of(target) != module_of(rel):
                        self.include_edges.setdefault(module_of(rel), {}).setdefault(
                            module_of(target), (rel, line, f"includes {shown}"))
                elif consumer:
                    self.check_consumer(rel, line, shown, consumer, target)
                if rel.endswith(".h") and target.endswith(".h"):
                    self.header_edges.setdefault(rel, {}).setdefault(target, line)

    def check_layer(self, rel, line, shown, layer, target):
        tlayer = self.map.layer_of(target)
        if tlayer == layer:
            return
        if tlayer is None:
            self.add(rel, line, f"{layer}/ includes {shown} ({target}), which is outside the "
                     "include map: layer: core includes only core/ and include/prunus/")
        elif self.map.rank[tlayer] >= self.map.rank[layer]:
            self.add(rel, line, f"{layer}/ (rank {self.map.rank[layer]}) includes {shown} "
                     f"({tlayer}/, rank {self.map.rank[tlayer]}): layer: a folder includes only "
                     "its own headers and those of lower-ranked folders")

    def check_consumer(self, rel, line, shown, consumer, target):
        allowed = self.map.consumers[consumer]
        for a in allowed:
            if target == a or (a.endswith("/") and target.startswith(a)):
                return
        self.add(rel, line, f"{consumer}/ includes {shown} ({target}): consumer: {consumer}/ may "
                 f"include only {', '.join(allowed)} and system headers")

    # -- symbols -------------------------------------------------------------

    def check_symbols(self):
        """Module edges from .c files' uses of other modules' globals; upward uses."""
        self.symbol_edges = {}
        owner = {}  # name -> (file, line)
        core_c = [r for r in sorted(self.sources) if r.startswith("core/") and r.endswith(".c")]
        for rel in core_c:
            for name, line in global_definitions(self.sources[rel].code).items():
                owner.setdefault(name, (rel, line))
        for rel in core_c:
            layer = self.map.layer_of(rel)
            uses = self.sources[rel].first_uses(owner)
            for name in sorted(uses, key=uses.get):
                drel, dline = owner[name]
                if module_of(drel) == module_of(rel):
                    continue
                what = f"uses {name} (defined at {drel}:{dline})"
                self.symbol_edges.setdefault(module_of(rel), {}).setdefault(
                    module_of(drel), (rel, uses[name], what))
                dlayer = self.map.layer_of(drel)
                if layer and dlayer and self.map.rank[dlayer] > self.map.rank[layer]:
                    self.add(rel, uses[name], f"{layer}/ {what} in {dlayer}/: uses: a folder calls "
                             "only into its own and lower-ranked folders")

    # -- cycles --------------------------------------------------------------

    @staticmethod
    def components(nodes, edges):
        """Strongly connected components with more than one node (Tarjan, iterative)."""
        index, low, on_stack, stack, out = {}, {}, set(), [], []
        counter = [0]
        for start in nodes:
            if start in index:
                continue
            work = [(start, iter(sorted(edges.get(start, ()))))]
            index[start] = low[start] = counter[0]
            counter[0] += 1
            stack.append(start)
            on_stack.add(start)
            while work:
                v, it = work[-1]
                advanced = False
                for w in it:
                    if w not in index:
                        index[w] = low[w] = counter[0]
                        counter[0] += 1
                        stack.append(w)
                        on_stack.add(w)
                        work.append((w, iter(sorted(edges.get(w, ())))))
                        advanced = True
                        break
                    if w in on_stack:
                        low[v] = min(low[v], index[w])
                if advanced:
                    continue
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
        return out

    @staticmethod
    def shortest_cycle(comp, edges):
        """A shortest cycle through the component's first node, as a node list."""
        first, inside = comp[0], set(comp)
        prev, frontier = {first: None}, [first]
        while frontier:
            nxt = []
            for v in frontier:
                for w in sorted(edges.get(v, ())):
                    if w == first:
                        path = [v]
                        while prev[path[-1]] is not None:
                            path.append(prev[path[-1]])
                        return list(reversed(path)) + [first]
                    if w in inside and w not in prev:
                        prev[w] = v
                        nxt.append(w)
            frontier = nxt
        return comp + [first]

    def check_cycles(self):
        hedges = self.header_edges
        header_cycles = []  # their modules' sets: the same loop is not reported twice
        for comp in self.components(sorted(hedges), hedges):
            header_cycles.append({module_of(h) for h in comp})
            cyc = self.shortest_cycle(comp, hedges)
            steps = [f"{a}:{hedges[a][b]} includes {os.path.basename(b)}" for a, b in zip(cyc, cyc[1:])]
            self.add(cyc[0], hedges[cyc[0]][cyc[1]],
                     f"header cycle {' -> '.join(cyc)} ({'; '.join(steps)}): header-cycle")
        medges = {}
        for edges in (self.include_edges, self.symbol_edges):
            for a, targets in edges.items():
                for b, why in targets.items():
                    medges.setdefault(a, {}).setdefault(b, why)
        for comp in self.components(sorted(medges), medges):
            if set(comp) in header_cycles:
                continue
            # a shortest loop through each member, each loop once: a component of three
            # modules is usually two loops, each to be cut on its own
            seen = []
            for start in comp:
                cyc = self.shortest_cycle([start] + [m for m in comp if m != start], medges)
                if set(cyc) in seen:
                    continue
                seen.append(set(cyc))
                steps = []
                for a, b in zip(cyc, cyc[1:]):
                    f, line, what = medges[a][b]
                    steps.append(f"{f}:{line} {what}")
                f, line, _ = medges[cyc[0]][cyc[1]]
                names = [m.replace("core/", "", 1) for m in cyc]
                self.add(f, line, f"module cycle {' -> '.join(names)} ({'; '.join(steps)}): "
                         "module-cycle: split the shared part into a module both can depend on")

    def run(self):
        self.check_map()
        self.check_includes()
        self.check_symbols()
        self.check_cycles()
        self.violations.sort()
        return self.violations


def check(root, out):
    """Prints the violations of the tree at root to out; returns the exit status."""
    try:
        checker = Checker(root)
    except MapError as e:
        print(f"{e}", file=out)
        return 2
    violations = checker.run()
    for rel, line, message in violations:
        print(f"{rel}:{line}: {message}" if line else f"{rel}: {message}", file=out)
    print(f"include-map: {len(checker.sources)} files, {checker.n_includes} includes, "
          f"{len(violations)} violation{'' if len(violations) == 1 else 's'}", file=out)
    return 1 if violations else 0


# ---------------------------------------------------------------------------
# self-test

FAKE_DOC = """# fake
<!-- include-map:layers -->
| rank | folder | owns |
|---|---|---|
| 0 | `include/prunus/` | public |
| 1 | `core/lo/` | low |
| 2 | `core/hi/` | high |
<!-- /include-map:layers -->
<!-- include-map:consumers -->
| tree | may include | why |
|---|---|---|
| `cli/` | `include/prunus/prunus.h` | the library API only |
| `tests/` | `core/` `include/prunus/` `tests/` | anything |
<!-- /include-map:consumers -->
"""

CLEAN_TREE = {
    "docs/architecture.md": FAKE_DOC,
    "meson.build": "core_folders = ['lo', 'hi']\n",
    "include/prunus/prunus.h": "#include <stddef.h>\n",
    "core/lo/a.h": "#include <prunus/prunus.h>\nint prunus_a(void);\n",
    "core/lo/a.c": '#include "a.h"\n/* #include "b.h" is a comment */\nint prunus_a(void) { return 1; }\n',
    "core/hi/b.h": '#include "a.h"\nint prunus_b(void);\n',
    "core/hi/b.c": '#include "b-impl.h"\nint prunus_b(void) { return prunus_a() + 1; }\n',
    "core/hi/b-impl.h": '#include "b.h"\n',
    "cli/main.c": "#include <prunus/prunus.h>\n#include <stdio.h>\nint main(void) { return 0; }\n",
    "tests/t.c": '#include "b.h"\n#include "a.h"\n',
}


def _write_tree(base, files):
    for rel, text in files.items():
        path = os.path.join(base, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


def _run_on(files):
    import io
    with tempfile.TemporaryDirectory() as base:
        _write_tree(base, files)
        out = io.StringIO()
        status = check(base, out)
        return status, out.getvalue().splitlines()


def self_test():
    failures = []

    def expect(label, cond, lines):
        print(f"{'ok' if cond else 'FAIL'}: {label}")
        if not cond:
            failures.append(label)
            print("  output was:\n    " + "\n    ".join(lines))

    status, lines = _run_on(CLEAN_TREE)
    expect("a clean tree passes", status == 0 and lines == [
        "include-map: 8 files, 10 includes, 0 violations"], lines)

    bad = dict(CLEAN_TREE)
    bad["core/lo/a.h"] = '#include <prunus/prunus.h>\n#include "x.h"\n'  # upward
    bad["core/hi/x.h"] = "\n"
    bad["core/hi/c.h"] = '#include "d.h"\n'  # header cycle c.h <-> d.h
    bad["core/hi/d.h"] = '#include "c.h"\n'
    bad["core/hi/e.c"] = '#include "f.h"\nint prunus_e(void) { return 0; }\n'  # include cycle
    bad["core/hi/e.h"] = "int prunus_e(void);\n"
    bad["core/hi/f.c"] = '#include "e.h"\n'
    bad["core/hi/f.h"] = "\n"
    bad["core/hi/g.c"] = ('#include "b.h"\n#include "a.h"\nint prunus_g(void) {\n'
                          "  return prunus_h();\n}\n")  # symbol cycle g <-> h
    bad["core/hi/h.c"] = '#include "g.h"\nint prunus_h(void) { return 0; }\n'
    bad["core/hi/g.h"] = "int prunus_g(void);\n"
    bad["core/lo/up.c"] = "int prunus_h(void);\nint prunus_up(void) { return prunus_h(); }\n"
    bad["cli/main.c"] = '#include <prunus/prunus.h>\n#include "a.h"\n'
    bad["tests/t.c"] = '#include "nope.h"\n'
    status, lines = _run_on(bad)
    want = [
        "cli/main.c:2: cli/ includes \"a.h\" (core/lo/a.h): consumer: cli/ may include only "
        "include/prunus/prunus.h and system headers",
        "core/hi/c.h:1: header cycle core/hi/c.h -> core/hi/d.h -> core/hi/c.h "
        "(core/hi/c.h:1 includes d.h; core/hi/d.h:1 includes c.h): header-cycle",
        "core/hi/e.c:1: module cycle hi/e -> hi/f -> hi/e (core/hi/e.c:1 includes \"f.h\"; "
        "core/hi/f.c:1 includes \"e.h\"): module-cycle: split the shared part into a module "
        "both can depend on",
        "core/hi/g.c:4: module cycle hi/g -> hi/h -> hi/g (core/hi/g.c:4 uses prunus_h "
        "(defined at core/hi/h.c:2); core/hi/h.c:1 includes \"g.h\"): module-cycle: split the "
        "shared part into a module both can depend on",
        "core/lo/a.h:2: core/lo/ (rank 1) includes \"x.h\" (core/hi/, rank 2): layer: a folder "
        "includes only its own headers and those of lower-ranked folders",
        "core/lo/up.c:1: core/lo/ uses prunus_h (defined at core/hi/h.c:2) in core/hi/: uses: "
        "a folder calls only into its own and lower-ranked folders",
        "tests/t.c:1: includes \"nope.h\", which is no file of the tree: resolve",
    ]
    for w in want:
        expect(f"reports: {w[:60]}...", w in lines, lines)
    expect("exit status 1 with 7 violations", status == 1 and
           lines[-1].endswith(", 7 violations") and len(lines) == 8, lines)

    drift = dict(CLEAN_TREE)
    drift["meson.build"] = "core_folders = ['lo']\n"
    drift["core/extra/x.c"] = "\n"
    status, lines = _run_on(drift)
    expect("a folder missing from the map or from meson.build fails", status == 1 and
           "docs/architecture.md: core/extra/ is not in the include map: map: give every core "
           "folder a rank in the layer table" in lines and
           "meson.build:1: core_folders ['lo'] differs from the include map's core folders "
           "['lo', 'hi']: map" in lines, lines)

    amb = dict(CLEAN_TREE)
    amb["core/hi/a.h"] = "\n"
    status, lines = _run_on(amb)
    expect("a header name in two core folders fails", status == 1 and any(
        'includes "a.h", which is in 2 core folders (core/lo/a.h, core/hi/a.h): resolve' in l
        for l in lines), lines)

    nomap = dict(CLEAN_TREE)
    nomap["docs/architecture.md"] = "# no map here\n"
    status, lines = _run_on(nomap)
    expect("a doc without the map is exit 2 naming the marker", status == 2 and lines == [
        "docs/architecture.md: no table between '<!-- include-map:layers -->' and "
        "'<!-- /include-map:layers -->'"], lines)

    print(f"self-test: {len(failures)} failed")
    return 1 if failures else 0


def main(argv):
    if len(argv) > 1 and argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0
    if len(argv) > 1 and argv[1] == "--self-test":
        return self_test()
    root = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    return check(root, sys.stdout)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
