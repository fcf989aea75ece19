"""Hubs that misbehave, in front of the local IoT Hub emulator, for the loop-latency bench:
a blackhole (accepts TCP connections, reads and never answers) and a slow hub (a proxy that
holds every chunk the hub sends for DELAY_S before passing it on). Each runs its own asyncio loop
in a thread; close() stops it and closes every connection."""
import asyncio
import threading


class _Server:
    def __init__(self):
        self.port = None
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("%s did not start" % type(self).__name__)

    def _run(self):
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        self._loop.run_until_complete(asyncio.sleep(0))
        self._loop.close()

    async def _serve(self, reader, writer):
        raise NotImplementedError

    def close(self):
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Blackhole(_Server):
    """Accepts every connection and never sends a byte (a hub behind a dead route)."""

    async def _serve(self, reader, writer):
        self.connections += 1
        try:
            while await reader.read(4096):
                pass
        finally:
            writer.close()


class SlowHub(_Server):
    """Passes the connection on to the hub at 127.0.0.1:UPSTREAM_PORT; what the hub sends arrives
    DELAY_S later, chunk by chunk in order (a congested or overloaded hub)."""

    def __init__(self, upstream_port, delay_s=1.0):
        self.upstream_port = upstream_port
        self.delay_s = delay_s
        super().__init__()

    async def _serve(self, reader, writer):
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def to_hub():
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def from_hub():
            while True:
                data = await up_reader.read(4096)
                if not data:
                    break
                await asyncio.sleep(self.delay_s)
                writer.write(data)
                await writer.drain()
            writer.close()

        try:
            await asyncio.gather(to_hub(), from_hub())
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            up_writer.close()
