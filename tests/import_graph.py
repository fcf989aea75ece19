"""Our modules' imports, read statically with ast (nothing is imported or run).

Every import statement counts, wherever it is (module level, inside a function, under a try), and
so does a module loaded by file name with importlib's spec_from_file_location: an import that
runs only sometimes is still a dependency of the design.
"""
import ast
import os


def module_names(roots):
    """{module name: file path} of the .py files under ROOTS, a list of (sys.path entry, folder
    inside it to scan or None for all of it)."""
    found = {}
    for base, folder in roots:
        top = os.path.join(base, folder) if folder else base
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
            for name in sorted(filenames):
                if not name.endswith(".py"):
                    continue
                path = os.path.join(dirpath, name)
                parts = os.path.relpath(path, base)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts.pop()
                found[".".join(parts)] = path
    return found


def _package_of(module, path):
    return module if path.endswith("__init__.py") else module.rpartition(".")[0]


def _resolve(name, modules):
    # The longest prefix of NAME that is one of our modules, or None (the standard library etc.).
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _loaded_by_path(call):
    # spec_from_file_location("x", os.path.join(REPO, "tools", "x.py")) loads the module x.
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if name != "spec_from_file_location":
        return None
    strings = [n.value for n in ast.walk(call) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    files = [s for s in strings if s.endswith(".py")]
    return os.path.basename(files[-1])[:-3] if files else None


def imports_of(module, path, modules):
    """The set of our modules that MODULE (at PATH) imports."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = _package_of(module, path)
    found = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            # `from a import b` imports the module a.b when there is one, else a name of a.
            targets = [base + "." + alias.name for alias in node.names]
            targets = [t for t in targets if t in modules] or [base]
        elif isinstance(node, ast.Call):
            loaded = _loaded_by_path(node)
            if loaded:
                targets = [loaded]
        for target in targets:
            resolved = _resolve(target, modules)
            if resolved and resolved != module:
                found.add(resolved)
    return found


def graph(roots):
    """{module: set of our modules it imports} for every module under ROOTS (see module_names)."""
    modules = module_names(roots)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(edges):
    """The import cycles of EDGES: each a sorted list of the modules of one strongly connected
    component with more than one module (Tarjan's algorithm, iterative)."""
    index = {}
    low = {}
    on_stack = set()
    stack = []
    found = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def reachable(edges, starts):
    """Every module imported, directly or not, by the modules STARTS (themselves included)."""
    seen = set()
    todo = list(starts)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(edges.get(module, ()))
    return seen
