"""What a command line does, as facts a detection can match whatever its spelling.

A ProcessCreate item's `commandline` is hostile input in one of two shapes: a shell line as
typed (quotes kept), or a process's argv joined with spaces (the Linux agent's audit and /proc
sources: quotes lost). parse() reads both as a shell would, well enough to find every simple
command in it: across `;`, `&&`, `||`, `|`, `&` and newlines, inside `sh -c ...`, `$(...)`,
backticks and `<(...)`, behind wrappers (sudo, nohup, env, timeout, busybox...). Each Command
has its program's normalized name (`/usr/bin/python3.11` -> `python`), its arguments, flags
(`-aG` also as `-a` and `-G`; `--output=F` as `--output`), redirections, what its output feeds
(the next command of a pipe, or the command a substitution is an argument of) and the inline
code of an interpreter (`python -c`, `perl -e`...). Bounded: the line is cut at MAX_CHARS and
nesting stops at MAX_DEPTH, so a crafted line costs linear time.
"""
import posixpath
import re

MAX_CHARS = 8192
MAX_DEPTH = 4
MAX_COMMANDS = 128

SHELLS = frozenset(("sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "busybox-sh", "fish",
                    "csh", "tcsh", "rbash"))
# interpreter -> the flags after which the next argument is inline code
INLINE_CODE_FLAGS = {"python": ("-c",), "perl": ("-e", "-E"), "ruby": ("-e",), "php": ("-r",),
                     "node": ("-e", "--eval", "-p"), "nodejs": ("-e", "--eval", "-p"),
                     "lua": ("-e",), "tclsh": (), "osascript": ("-e",), "pwsh": ("-c", "-command"),
                     "jrunscript": ("-e",)}
# wrappers that run the rest of their arguments as a command; value: options taking a value
WRAPPERS = {"sudo": ("-u", "-g", "-h", "-p", "-c", "-r", "-t", "-U", "-C", "-D", "-R", "-T"),
            "doas": ("-u", "-C"), "nohup": (), "env": ("-u", "-C", "-S", "--unset", "--chdir"),
            "timeout": ("-s", "-k", "--signal", "--kill-after"), "nice": ("-n", "--adjustment"),
            "ionice": ("-c", "-n", "-p", "-t"), "stdbuf": ("-i", "-o", "-e"), "setsid": (),
            "exec": ("-a",), "command": (), "builtin": (), "time": ("-f", "-o"), "chrt": (),
            "taskset": (), "unbuffer": (), "chroot": (), "xargs": ("-I", "-n", "-P", "-d", "-L",
                                                                     "-a", "-E", "-s"),
            "watch": ("-n", "-d"), "strace": ("-o", "-e", "-p", "-s"), "ltrace": ("-o", "-e"),
            "torsocks": (), "proxychains": ("-f",), "proxychains4": ("-f",), "flock": ("-w",),
            "systemd-run": ("-u", "--unit", "-p", "--property")}
# wrappers whose first positional argument is not the command (a duration, a directory...)
_WRAPPER_FIRST_ARG = {"timeout": 1, "chroot": 1, "flock": 1, "taskset": 1, "chrt": 1}
_VERSIONED = re.compile(r"^(python|perl|php|ruby|lua|node|pypy|tclsh)[0-9][0-9.]*$")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_OPERATORS = ("&&", "||", ";;", ";", "|&", "|", "&", "\n")
SUBSTITUTED = "${SUBSTITUTED}"   # stands for a $(...) in a word; its commands are parsed apart
_REDIRECT = re.compile(r"(\d*|&)(>>|>&|>\||>|<<<|<<|<&|<>|<)")


class Command:
    """One simple command of a line, after its wrappers."""

    __slots__ = ("program", "path", "args", "flags", "redirects", "feeds", "fed_by", "wrappers",
                 "assignments", "inline_code", "user", "depth")

    def __init__(self, path, args, depth):
        self.path = path
        self.program = program_name(path)
        self.args = args
        self.flags = set()
        self.redirects = []          # (operator, target)
        self.feeds = None            # program that reads this command's output
        self.fed_by = None           # program whose output this command reads
        self.wrappers = []           # sudo, nohup... in the order written
        self.assignments = {}        # VAR=value before the program
        self.inline_code = None
        self.depth = depth

    def paths(self):
        """Every argument and redirection target that looks like a path (`if=/etc/x`: its
        value)."""
        out = [a for a in self.args if "/" in a or a.startswith((".", "~"))]
        out.extend(a.split("=", 1)[1] for a in self.args
                   if "=" in a and a.split("=", 1)[1].startswith(("/", "~")))
        out.extend(target for _, target in self.redirects)
        return out

    def __repr__(self):
        return "Command(%r, %r)" % (self.program, self.args)


def program_name(path):
    """'/usr/bin/Python3.11' -> 'python'; 'nc.traditional' stays (the catalogue lists both)."""
    name = posixpath.basename(path.rstrip("/")) if path else ""
    name = name.strip().lower()
    if name.startswith("-"):          # a login shell's argv[0]: "-bash"
        name = name[1:]
    match = _VERSIONED.match(name)
    if match:
        name = match.group(1)
    if name == "python" or name.startswith(("pypy",)):
        return "python"
    return name


def _flags(args):
    """'-qO-' -> {'-qO-', '-q', '-O'}; '--output=F' -> {'--output'}; '-connect' as itself."""
    flags = set()
    for arg in args:
        if arg.startswith("--") and len(arg) > 2:
            flags.add(arg.split("=", 1)[0].lower())
        elif arg.startswith("-") and len(arg) > 1 and not arg[1].isdigit():
            flags.add(arg)
            if len(arg) > 6:
                continue  # a long option written with one dash (openssl -connect, find -delete)
            for c in arg[1:]:
                if not c.isalpha():
                    break
                flags.add("-" + c)
    return flags


class _Lexer:
    """A shell tokenizer, forgiving: unbalanced quotes end at the end of the line."""

    def __init__(self, text):
        self.text = text
        self.pos = 0
        self.substitutions = []      # (inner text, word index) found while reading words

    def tokens(self):
        """[('word', text, [inner substitution texts]) | ('op', text)]"""
        out = []
        text = self.text
        n = len(text)
        while self.pos < n:
            c = text[self.pos]
            if c in " \t\r":
                self.pos += 1
                continue
            if c == "#" and (self.pos == 0 or text[self.pos - 1] in " \t\n;&|"):
                end = text.find("\n", self.pos)
                self.pos = n if end < 0 else end
                continue
            op = self._operator()
            if op:
                out.append(("op", op))
                continue
            redirect = _REDIRECT.match(text, self.pos)
            if redirect and (redirect.group(1) or c in "<>"):
                if text.startswith("<(", self.pos):
                    pass  # process substitution: a word
                else:
                    self.pos = redirect.end()
                    out.append(("redirect", redirect.group(2)))
                    continue
            start = self.pos
            out.append(self._word())
            if self.pos == start:   # a character no rule takes: skip it rather than loop
                self.pos += 1
        return out

    def _operator(self):
        for op in _OPERATORS:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return op
        return None

    def _balanced(self, opening, closing):
        """Text up to the matching CLOSING (quotes respected); pos moves past it."""
        depth = 1
        start = self.pos
        text = self.text
        quote = None
        while self.pos < len(text):
            c = text[self.pos]
            if quote:
                if c == "\\" and quote == '"':
                    self.pos += 1
                elif c == quote:
                    quote = None
            elif c in "'\"":
                quote = c
            elif c == "\\":
                self.pos += 1
            elif text.startswith(opening, self.pos):
                depth += 1
            elif c == closing:
                depth -= 1
                if depth == 0:
                    inner = text[start:self.pos]
                    self.pos += 1
                    return inner
            self.pos += 1
        return text[start:]

    def _word(self):
        text = self.text
        n = len(text)
        parts = []
        inner = []
        while self.pos < n:
            c = text[self.pos]
            if c in " \t\r\n;&|" or (c in "<>" and not text.startswith("<(", self.pos)):
                break
            if c == "\\":
                if self.pos + 1 < n:
                    parts.append(text[self.pos + 1])
                self.pos += 2
            elif c == "'":
                end = text.find("'", self.pos + 1)
                end = n if end < 0 else end
                parts.append(text[self.pos + 1:end])
                self.pos = end + 1
            elif c == '"':
                self.pos += 1
                while self.pos < n and text[self.pos] != '"':
                    d = text[self.pos]
                    if d == "\\" and self.pos + 1 < n and text[self.pos + 1] in '"\\$`':
                        parts.append(text[self.pos + 1])
                        self.pos += 2
                    elif text.startswith("$(", self.pos) and not text.startswith("$((", self.pos):
                        self.pos += 2
                        inner.append(self._balanced("(", ")"))
                        parts.append(SUBSTITUTED)
                    elif d == "`":
                        end = text.find("`", self.pos + 1)
                        end = n if end < 0 else end
                        inner.append(text[self.pos + 1:end])
                        parts.append(SUBSTITUTED)
                        self.pos = end + 1
                    else:
                        parts.append(d)
                        self.pos += 1
                self.pos += 1
            elif text.startswith("$((", self.pos):
                self.pos += 3
                parts.append("$((" + self._balanced("(", ")") + ")")
            elif text.startswith("$(", self.pos) or text.startswith("<(", self.pos) \
                    or text.startswith(">(", self.pos):
                self.pos += 2
                inner.append(self._balanced("(", ")"))
                parts.append(SUBSTITUTED)
            elif c == "`":
                end = text.find("`", self.pos + 1)
                end = n if end < 0 else end
                inner.append(text[self.pos + 1:end])
                parts.append(SUBSTITUTED)
                self.pos = end + 1
            elif c == "$" and text.startswith("${", self.pos):
                end = text.find("}", self.pos)
                end = n - 1 if end < 0 else end
                parts.append(text[self.pos:end + 1])
                self.pos = end + 1
            else:
                parts.append(c)
                self.pos += 1
        return ("word", "".join(parts), inner)


def parse(commandline, executable=None):
    """Every simple Command in COMMANDLINE (a str), outermost first. EXECUTABLE, the item's
    `executable` field, stands for the first command's path when its argv[0] is not a path."""
    if not isinstance(commandline, str):
        return []
    commands = []
    _parse_into(commandline[:MAX_CHARS], 0, commands)
    if commands and isinstance(executable, str) and executable.startswith("/") \
            and "/" not in commands[0].path and commands[0].depth == 0 and not commands[0].wrappers:
        first = commands[0]
        if program_name(executable) == first.program:
            first.path = executable
    return commands


def _parse_into(text, depth, commands, feeds=None, fed_by=None):
    if depth > MAX_DEPTH or len(commands) >= MAX_COMMANDS:
        return
    lexer = _Lexer(text)
    tokens = lexer.tokens()
    pipeline = []                  # (command, its substitutions) of the current pipeline
    words = []
    redirects = []
    nested = []                    # substitution texts of the current command
    pending_redirect = None

    def finish(op):
        nonlocal words, redirects, nested
        command = _command(words, redirects, depth, commands) if words or redirects else None
        if command is not None:
            if pipeline and op_before[0] in ("|", "|&"):
                pipeline[-1][0].feeds = command.program
                command.fed_by = pipeline[-1][0].program
            pipeline.append((command, nested))
        words, redirects, nested = [], [], []

    op_before = [None]
    for token in tokens:
        kind = token[0]
        if kind == "word":
            if pending_redirect is not None:
                redirects.append((pending_redirect, token[1]))
                pending_redirect = None
                nested.extend(token[2])
            else:
                words.append(token[1])
                nested.extend(token[2])
        elif kind == "redirect":
            pending_redirect = token[1]
        else:
            finish(token[1])
            if token[1] not in ("|", "|&"):
                pipeline_done(pipeline, feeds, fed_by, depth, commands, text)
                pipeline = []
            op_before[0] = token[1]
    finish(None)
    pipeline_done(pipeline, feeds, fed_by, depth, commands, text)


def pipeline_done(pipeline, feeds, fed_by, depth, commands, text):
    """Once a pipeline is whole: a nested script's last command feeds what its wrapper feeds,
    its first reads what the wrapper reads; then the scripts its commands run (`sh -c`) and
    their substitutions are parsed, knowing what each command feeds."""
    if not pipeline:
        return
    last, first = pipeline[-1][0], pipeline[0][0]
    if feeds is not None and last.feeds is None:
        last.feeds = feeds
    if fed_by is not None and first.fed_by is None:
        first.fed_by = fed_by
    for command, nested in pipeline:
        _run_inner(command, depth, commands, text)
        for inner in nested:
            _parse_into(inner, depth + 1, commands, feeds=command.program)


def _command(words, redirects, depth, commands):
    """Strips assignments and wrappers from WORDS, records the Command (and any script it runs
    with -c) into COMMANDS; returns it (None for an assignment alone)."""
    assignments = {}
    wrappers = []
    index = 0
    while index < len(words) and _ASSIGNMENT.match(words[index]):
        name, _, value = words[index].partition("=")
        assignments[name] = value
        index += 1
    while index < len(words):
        name = program_name(words[index])
        if name == "busybox" and index + 1 < len(words) and not words[index + 1].startswith("-"):
            wrappers.append(name)
            index += 1
            continue
        if name not in WRAPPERS:
            break
        wrappers.append(name)
        index += 1
        takes_value = WRAPPERS[name]
        skip_positional = _WRAPPER_FIRST_ARG.get(name, 0)
        while index < len(words):
            word = words[index]
            if word == "--":
                index += 1
                break
            if word.startswith("-") and len(word) > 1:
                index += 2 if word in takes_value else 1
                continue
            if name == "env" and _ASSIGNMENT.match(word):
                key, _, value = word.partition("=")
                assignments[key] = value
                index += 1
                continue
            if skip_positional:
                skip_positional -= 1
                index += 1
                continue
            break
    if index < len(words) and words[index] == SUBSTITUTED:
        index = len(words)   # runs what a substitution printed: its commands are parsed apart
    if index >= len(words):
        if assignments or wrappers or redirects:
            command = Command("", [], depth)
            command.assignments = assignments
            command.wrappers = wrappers
            command.redirects = list(redirects)
            commands.append(command)
            return command
        return None
    command = Command(words[index], words[index + 1:], depth)
    command.assignments = assignments
    command.wrappers = wrappers
    command.redirects = list(redirects)
    command.flags = _flags(command.args)
    commands.append(command)
    return command


def _run_inner(command, depth, commands, text):
    """`sh -c SCRIPT`, `su -c`, `eval`: the script's commands; `python -c CODE`: inline code.
    TEXT is the line the command was read from: in an argv joined with spaces the code's own
    `;` split it into several commands, so the code is the rest of that line."""
    program = command.program
    args = command.args
    if program in SHELLS or program in ("su", "runuser", "eval", "script"):
        if program == "eval":
            script = " ".join(args)
        else:
            script = None
            for i, arg in enumerate(args):
                if arg == "-c" or (arg.startswith("-") and not arg.startswith("--")
                                   and "c" in arg[1:] and arg[1:].isalpha()):
                    # argv joined with spaces has lost the script's quotes: the rest is the script
                    script = " ".join(args[i + 1:])
                    break
        if script:
            _parse_into(script, depth + 1, commands, feeds=command.feeds, fed_by=command.fed_by)
        elif script is not None and command.redirects:
            # `sh -c '> F'` with its quotes lost: the redirection was the script
            inner = Command("", [], depth + 1)
            inner.redirects = list(command.redirects)
            commands.append(inner)
        return
    code_flags = INLINE_CODE_FLAGS.get(program)
    if code_flags is not None:
        for i, arg in enumerate(args):
            flag = arg if arg in code_flags else next(
                (f for f in code_flags if len(f) == 2 and f != "-p" and arg.startswith(f)), None)
            if flag is None:
                continue
            rest = args[i + 1:] if arg == flag else [arg[2:]] + args[i + 1:]
            command.inline_code = _rest_of_line(text, " " + flag, len(flag) + 1, " ".join(rest))
            _parse_literals(command.inline_code, depth, commands)
            return
    if program in ("awk", "gawk", "mawk", "nawk", "busybox-awk"):
        code = [a for a in args if not a.startswith("-")]
        if code:
            first = code[0].split(" ")[0]
            command.inline_code = _rest_of_line(text, first, 0, " ".join(code))
            _parse_literals(command.inline_code, depth, commands)


def _rest_of_line(text, anchor, skip, parsed):
    """The raw text of TEXT from SKIP characters after ANCHOR's first appearance, if longer
    than PARSED (the code as the shell read it)."""
    index = text.find(anchor)
    if index < 0:
        return parsed
    tail = text[index + skip:].strip()
    return tail if len(tail) > len(parsed) else parsed


_LITERAL = re.compile("'([^'\\n]{3,})'|\"([^\"\\n]{3,})\"")


def _parse_literals(code, depth, commands):
    """Strings in inline code that a program may hand to a shell (`os.system("...")`,
    `exec("/bin/sh -i <&3")`) are parsed as command lines too, and so are the strings inside
    them (code quoted for the shell holds the program's own string literals)."""
    if depth > MAX_DEPTH:
        return
    for single, double in _LITERAL.findall(code[:MAX_CHARS]):
        literal = single or double
        if " " in literal or literal.startswith("/"):
            _parse_into(literal, depth + 1, commands)
            _parse_literals(literal, depth + 1, commands)


def normalize_path(path):
    """'/tmp//x/../y' -> '/tmp/y'; '~/.bash_history' and '$HOME/...' keep their head."""
    if not path:
        return path
    path = path.strip()
    if path.startswith("/"):
        return posixpath.normpath(path).replace("//", "/")
    return path


def is_under(path, directories):
    path = normalize_path(path)
    return any(path == d.rstrip("/") or path.startswith(d.rstrip("/") + "/") for d in directories)


def has_hidden_component(path):
    """A path with a component starting with '.' (not '.' or '..'), e.g. /home/u/.x/kworker."""
    return any(part.startswith(".") and part not in (".", "..")
               for part in normalize_path(path).split("/")[:-1] + [posixpath.basename(path)])
