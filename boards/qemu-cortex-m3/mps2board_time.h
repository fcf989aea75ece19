// time.time() and time.localtime() of the emulated board (included by extmod/modtime.c): the
// host's clock, read over semihosting (mps2board.c).
#include "shared/timeutils/timeutils.h"

mp_obj_t mps2board_time_obj(void);
uint64_t mp_hal_time_ns(void);

static mp_obj_t mp_time_time_get(void) {
    return mps2board_time_obj();
}

static void mp_time_localtime_get(timeutils_struct_time_t *tm) {
    timeutils_seconds_since_epoch_to_struct_time(mp_hal_time_ns() / 1000000000ULL, tm);
}
