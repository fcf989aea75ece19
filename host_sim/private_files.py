"""Files the agent and its commands create that hold events or secrets: mode 0600 in folders
of mode 0700, whatever the umask of whoever runs them (the host outbox queues command lines;
a recording holds every event). os.open's mode is filtered by the umask and only takes bits
away, and an existing file keeps its mode: fchmod after opening makes it exact either way."""
import os

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def private_folder(path):
    """Creates PATH (and missing parents) mode 0700; a folder already there is left as it is
    (it may be shared on purpose, like ~/.local/state)."""
    if not os.path.isdir(path):
        os.makedirs(path, mode=FOLDER_MODE, exist_ok=True)
        os.chmod(path, FOLDER_MODE)


def private_fd(path, flags):
    """os.open(PATH, FLAGS | O_CREAT) with the file made 0600 before anything is written."""
    fd = os.open(path, flags | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd


def touch_private(path):
    """Creates PATH empty if missing, and makes it 0600: for a SQLite file, whose -wal, -shm
    and -journal files SQLite then creates with the same mode."""
    os.close(private_fd(path, os.O_RDWR))


def open_private(path, mode="w", encoding="utf-8"):
    """open() for writing ("w" truncates, "a" appends), the file 0600."""
    flags = os.O_WRONLY | (os.O_APPEND if mode.startswith("a") else os.O_TRUNC)
    return os.fdopen(private_fd(path, flags), mode, encoding=None if "b" in mode else encoding)
