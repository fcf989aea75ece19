"""A `microagent run` process whose output is read in threads, so a test can wait for the
agent's "collecting:" line (its data sources are open) before it makes activity to be caught."""
import subprocess
import threading
import time

READY = "microagent: collecting: "


class AgentProcess:
    def __init__(self, args, env=None):
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.ready = threading.Event()
        self._out, self._err = [], []
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self._out)),
                         threading.Thread(target=self._read, args=(self.proc.stderr, self._err))]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, lines):
        for line in stream:
            lines.append(line)
            if line.startswith(READY):
                self.ready.set()
        stream.close()

    def wait_ready(self, timeout=60):
        """Waits for the "collecting:" line; AssertionError (with stderr) if it never came."""
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self.finish(30)
                raise AssertionError("the agent never started collecting:\n" + "".join(self._err))

    @property
    def stderr_lines(self):
        """How many lines of stderr were read so far."""
        return len(self._err)

    def wait_for_stderr(self, texts, after=0, timeout=60):
        """Waits for a line of stderr, from line AFTER on, containing one of TEXTS: True when it
        came, False when the process ended without it; AssertionError (with stderr) if neither
        happened in TIMEOUT seconds."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self._err[after:] for text in texts):
            if self.proc.poll() is not None:
                return False
            if time.monotonic() > deadline:
                raise AssertionError("no line with %s on stderr:\n%s" % (" or ".join(texts), "".join(self._err)))
            time.sleep(0.05)
        return True

    def finish(self, timeout=120):
        """Waits for the process to end: (exit code, stdout, stderr). One that does not end in
        TIMEOUT seconds is killed (no agent outlives its test) and fails the test."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the agent did not exit within %gs:\n%s"
                                 % (timeout, "".join(self._err)))
        for reader in self._readers:
            reader.join(timeout)
        return code, "".join(self._out), "".join(self._err)
