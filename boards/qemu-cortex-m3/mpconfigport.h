// The qemu port's configuration plus what the microagent needs on the emulated board. This file
// shadows ports/qemu/mpconfigport.h (BOARD_DIR comes first on the include path).
#include "ports/qemu/mpconfigport.h"

// The agent shares the application's asyncio loop.
#undef MICROPY_PY_ASYNCIO
#define MICROPY_PY_ASYNCIO (1)

// mbedTLS allocates from the MicroPython heap, as on a board.
#define MICROPY_TRACKED_ALLOC (1)

// time.time() from the host's clock over semihosting (SAS tokens need Unix time), os.urandom.
#define MICROPY_PY_TIME_TIME_TIME_NS (1)
#define MICROPY_PY_TIME_INCLUDEFILE "mps2board_time.h"
#define MICROPY_PY_OS_URANDOM (1)

// At every (soft) boot: mount the RAM filesystem and put it on sys.path (frozen _boot.py).
void mps2board_init(void);
#define MICROPY_PORT_INIT_FUNC mps2board_init()

// Unix time, as the unix port: time.time() and time.gmtime() count from 1970.
#define MICROPY_EPOCH_IS_1970 (1)
#define MICROPY_PY_TIME_GMTIME_LOCALTIME_MKTIME (1)
