"""A throw-away copy of this system for tests that install packages: a private mount namespace
(unshare) holding an overlay of / whose writes go to a tmpfs, entered with chroot. dpkg, python3
and the kernel are the real ones; this shared machine is left untouched, and the namespace and
its mounts vanish when the script ends. Needs root."""

# Shell lines that set up the copy: $T is an empty work directory; afterwards $R is its root.
PRELUDE = r"""
set -eu
mount -t tmpfs tmpfs "$T"
mkdir "$T/upper" "$T/work" "$T/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$T/upper,workdir=$T/work" "$T/root"
R=$T/root
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
"""


def command(script, work_dir, *args):
    """argv running PRELUDE then SCRIPT in a private mount namespace, with T=WORK_DIR and the
    script's own arguments ARGS as $1, $2..."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'T=$1; shift\n' + PRELUDE + script, "sh", str(work_dir)] + [str(a) for a in args]
