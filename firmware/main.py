# The board's entry point (written by tools/flash.py): starts the microagent security agent and,
# beside it on the same asyncio loop, the application in app.py (`async def main()`).
# The agent reads microagent_board.json and microagent_device.json, prints
# "microagent: started ..." once it runs, and never takes the application down.
from microagent.settings import boot

settings, outbox = boot(lambda text: print("microagent: " + text))
from microagent import agent  # after boot(): the outbox buffer is allocated first

agent.main(settings, outbox)  # without settings (board not set up) only the application runs
