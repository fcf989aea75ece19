# Runs before main.py at every boot (written by tools/flash.py). Joins Wi-Fi when the board has
# it and microagent_wifi.json holds {"ssid": "...", "password": "..."}; otherwise does nothing
# (the unix port and Ethernet boards are already on the network, or your application connects).
def _join_wifi():
    try:
        import network
        import json
        with open("microagent_wifi.json") as f:
            wifi = json.load(f)
    except (ImportError, OSError, ValueError):
        return
    import time
    station = network.WLAN(network.STA_IF)
    station.active(True)
    if not station.isconnected():
        station.connect(wifi["ssid"], wifi["password"])
        for _ in range(100):  # up to 10 s; the agent retries the hub with backoff anyway
            if station.isconnected():
                break
            time.sleep_ms(100)
    print("microagent: wifi %s" % ("connected " + station.ifconfig()[0]
                                   if station.isconnected() else "not connected yet"))


_join_wifi()
del _join_wifi
