// The emulated MPS2-AN385 board's own drivers, as a user C module `mps2board`:
//   mps2board.UART(n)   a CMSDK APB UART (n = 1..4; UART0 is the REPL console) as a
//                       non-blocking stream: read/readinto return None when nothing has arrived.
//   mps2board.ramdisk() the board's RAM disk (a static buffer outside the MicroPython heap) as a
//                       bytearray, for the block device _boot.py mounts at /flash.
//   mps2board.host_open(path, mode) a file of the host, read through semihosting (QEMU's debug
//                       channel) with a 512-byte buffer: hostfs.py mounts them at /host.
// and the clock: Unix time from the host over semihosting (QEMU's -semihosting), for time.time(),
// mbedTLS certificate checks and SAS token expiry. The board has no entropy source: os.urandom
// and mbedTLS use the qemu port's LCG (docs/targets.md says what that means).
#include <string.h>
#include <time.h>

#include "py/mphal.h"
#include "py/runtime.h"
#include "py/stream.h"
#include "py/mperrno.h"
#include "shared/runtime/pyexec.h"
#include "shared/timeutils/timeutils.h"

#define RAMDISK_BYTES (128 * 1024)
#define UART_BASE(n) (0x40004000 + 0x1000 * (n))
#define UART_STATE_TXFULL (1 << 0)
#define UART_STATE_RXFULL (1 << 1)
#define UART_CTRL_TX_EN (1 << 0)
#define UART_CTRL_RX_EN (1 << 1)
#define SYS_OPEN (0x01)
#define SYS_CLOSE (0x02)
#define SYS_READ (0x06)
#define SYS_FLEN (0x0C)
#define SYS_TIME (0x11)
#define HOSTFILE_BUFFER (512)

typedef struct _cmsdk_uart_t {
    volatile uint32_t DATA;
    volatile uint32_t STATE;
    volatile uint32_t CTRL;
    volatile uint32_t INTSTATUS;
    volatile uint32_t BAUDDIV;
} cmsdk_uart_t;

static uint8_t ramdisk[RAMDISK_BYTES] __attribute__((aligned(4)));

// ---- clock ----------------------------------------------------------------------------------

static uint32_t semihosting_call(uint32_t op, const void *arg) {
    register uint32_t r0 __asm__ ("r0") = op;
    register const void *r1 __asm__ ("r1") = arg;
    __asm__ volatile ("bkpt 0xAB" : "+r" (r0) : "r" (r1) : "memory");
    return r0;
}

static uint32_t semihosting_time(void) {
    return semihosting_call(SYS_TIME, NULL);
}

// Seconds are read from the host once per boot; ticks_ms carries them on (a semihosting call
// stops the emulated CPU for a while).
static uint32_t boot_seconds;
static mp_uint_t boot_ticks_ms;

static uint64_t unix_ms(void) {
    if (boot_seconds == 0) {
        boot_seconds = semihosting_time();
        boot_ticks_ms = mp_hal_ticks_ms();
    }
    return (uint64_t)boot_seconds * 1000 + (mp_uint_t)(mp_hal_ticks_ms() - boot_ticks_ms);
}

uint64_t mp_hal_time_ns(void) {
    return unix_ms() * 1000000ULL;
}

mp_obj_t mps2board_time_obj(void) {
    return mp_obj_new_int_from_ull(unix_ms() / 1000);
}

time_t mps2board_mbedtls_time(time_t *timer) {
    time_t now = (time_t)(unix_ms() / 1000);
    if (timer) {
        *timer = now;
    }
    return now;
}

int64_t mbedtls_ms_time(void) {
    return (int64_t)unix_ms();
}

struct tm *gmtime(const time_t *timer) {
    static struct tm result;
    timeutils_struct_time_t tm;
    timeutils_seconds_since_1970_to_struct_time(*timer, &tm);
    result.tm_year = tm.tm_year - 1900;
    result.tm_mon = tm.tm_mon - 1;
    result.tm_mday = tm.tm_mday;
    result.tm_hour = tm.tm_hour;
    result.tm_min = tm.tm_min;
    result.tm_sec = tm.tm_sec;
    result.tm_wday = (tm.tm_wday + 1) % 7;
    result.tm_yday = tm.tm_yday - 1;
    result.tm_isdst = 0;
    return &result;
}

// ---- boot -----------------------------------------------------------------------------------

void mps2board_init(void) {
    pyexec_frozen_module("_boot.py", false);
}

// ---- UART -----------------------------------------------------------------------------------

typedef struct _mps2board_uart_obj_t {
    mp_obj_base_t base;
    cmsdk_uart_t *uart;
    uint8_t id;
} mps2board_uart_obj_t;

static mp_obj_t mps2board_uart_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw,
    const mp_obj_t *args) {
    mp_arg_check_num(n_args, n_kw, 1, 1, false);
    mp_int_t id = mp_obj_get_int(args[0]);
    if (id < 1 || id > 4) {
        mp_raise_ValueError(MP_ERROR_TEXT("UART 1..4 (UART0 is the console)"));
    }
    mps2board_uart_obj_t *self = mp_obj_malloc(mps2board_uart_obj_t, type);
    self->id = id;
    self->uart = (cmsdk_uart_t *)UART_BASE(id);
    self->uart->BAUDDIV = 16;
    self->uart->CTRL = UART_CTRL_TX_EN | UART_CTRL_RX_EN;
    return MP_OBJ_FROM_PTR(self);
}

static void mps2board_uart_print(const mp_print_t *print, mp_obj_t self_in, mp_print_kind_t kind) {
    mps2board_uart_obj_t *self = MP_OBJ_TO_PTR(self_in);
    mp_printf(print, "UART(%u)", self->id);
}

static mp_uint_t mps2board_uart_read(mp_obj_t self_in, void *buf, mp_uint_t size, int *errcode) {
    mps2board_uart_obj_t *self = MP_OBJ_TO_PTR(self_in);
    uint8_t *out = buf;
    mp_uint_t n = 0;
    while (n < size && (self->uart->STATE & UART_STATE_RXFULL)) {
        out[n++] = self->uart->DATA;
    }
    if (n == 0 && size > 0) {
        *errcode = MP_EAGAIN;
        return MP_STREAM_ERROR;
    }
    return n;
}

static mp_uint_t mps2board_uart_write(mp_obj_t self_in, const void *buf, mp_uint_t size, int *errcode) {
    mps2board_uart_obj_t *self = MP_OBJ_TO_PTR(self_in);
    const uint8_t *in = buf;
    for (mp_uint_t i = 0; i < size; ++i) {
        while (self->uart->STATE & UART_STATE_TXFULL) {
        }
        self->uart->DATA = in[i];
    }
    return size;
}

static mp_uint_t mps2board_uart_ioctl(mp_obj_t self_in, mp_uint_t request, uintptr_t arg, int *errcode) {
    mps2board_uart_obj_t *self = MP_OBJ_TO_PTR(self_in);
    if (request == MP_STREAM_POLL) {
        mp_uint_t ready = 0;
        if ((arg & MP_STREAM_POLL_RD) && (self->uart->STATE & UART_STATE_RXFULL)) {
            ready |= MP_STREAM_POLL_RD;
        }
        if ((arg & MP_STREAM_POLL_WR) && !(self->uart->STATE & UART_STATE_TXFULL)) {
            ready |= MP_STREAM_POLL_WR;
        }
        return ready;
    }
    if (request == MP_STREAM_CLOSE || request == MP_STREAM_FLUSH) {
        return 0;
    }
    *errcode = MP_EINVAL;
    return MP_STREAM_ERROR;
}

static mp_obj_t mps2board_uart_any(mp_obj_t self_in) {
    mps2board_uart_obj_t *self = MP_OBJ_TO_PTR(self_in);
    return MP_OBJ_NEW_SMALL_INT((self->uart->STATE & UART_STATE_RXFULL) ? 1 : 0);
}
static MP_DEFINE_CONST_FUN_OBJ_1(mps2board_uart_any_obj, mps2board_uart_any);

static const mp_rom_map_elem_t mps2board_uart_locals_dict_table[] = {
    { MP_ROM_QSTR(MP_QSTR_read), MP_ROM_PTR(&mp_stream_read_obj) },
    { MP_ROM_QSTR(MP_QSTR_readinto), MP_ROM_PTR(&mp_stream_readinto_obj) },
    { MP_ROM_QSTR(MP_QSTR_readline), MP_ROM_PTR(&mp_stream_unbuffered_readline_obj) },
    { MP_ROM_QSTR(MP_QSTR_write), MP_ROM_PTR(&mp_stream_write_obj) },
    { MP_ROM_QSTR(MP_QSTR_close), MP_ROM_PTR(&mp_stream_close_obj) },
    { MP_ROM_QSTR(MP_QSTR_any), MP_ROM_PTR(&mps2board_uart_any_obj) },
};
static MP_DEFINE_CONST_DICT(mps2board_uart_locals_dict, mps2board_uart_locals_dict_table);

static const mp_stream_p_t mps2board_uart_stream_p = {
    .read = mps2board_uart_read,
    .write = mps2board_uart_write,
    .ioctl = mps2board_uart_ioctl,
    .is_text = false,
};

static MP_DEFINE_CONST_OBJ_TYPE(
    mps2board_uart_type,
    MP_QSTR_UART,
    MP_TYPE_FLAG_ITER_IS_STREAM,
    make_new, mps2board_uart_make_new,
    print, mps2board_uart_print,
    protocol, &mps2board_uart_stream_p,
    locals_dict, &mps2board_uart_locals_dict
    );

// ---- host files -----------------------------------------------------------------------------

typedef struct _mps2board_hostfile_obj_t {
    mp_obj_base_t base;
    int32_t handle;
    uint16_t pos;
    uint16_t len;
    uint8_t buf[HOSTFILE_BUFFER];
} mps2board_hostfile_obj_t;

static mp_uint_t hostfile_read(mp_obj_t self_in, void *out, mp_uint_t size, int *errcode) {
    mps2board_hostfile_obj_t *self = MP_OBJ_TO_PTR(self_in);
    if (self->handle < 0) {
        *errcode = MP_EBADF;
        return MP_STREAM_ERROR;
    }
    uint8_t *dest = out;
    mp_uint_t done = 0;
    while (done < size) {
        if (self->pos == self->len) {
            uint32_t args[3] = { (uint32_t)self->handle, (uint32_t)self->buf, HOSTFILE_BUFFER };
            uint32_t missing = semihosting_call(SYS_READ, args);
            if (missing > HOSTFILE_BUFFER) {
                *errcode = MP_EIO;
                return MP_STREAM_ERROR;
            }
            self->pos = 0;
            self->len = HOSTFILE_BUFFER - missing;
            if (self->len == 0) {
                break;  // end of file
            }
        }
        mp_uint_t n = MIN(size - done, (mp_uint_t)(self->len - self->pos));
        memcpy(dest + done, self->buf + self->pos, n);
        self->pos += n;
        done += n;
    }
    return done;
}

static mp_uint_t hostfile_ioctl(mp_obj_t self_in, mp_uint_t request, uintptr_t arg, int *errcode) {
    mps2board_hostfile_obj_t *self = MP_OBJ_TO_PTR(self_in);
    if (request == MP_STREAM_CLOSE) {
        if (self->handle >= 0) {
            uint32_t args[1] = { (uint32_t)self->handle };
            semihosting_call(SYS_CLOSE, args);
            self->handle = -1;
        }
        return 0;
    }
    if (request == MP_STREAM_POLL) {
        return arg & MP_STREAM_POLL_RD;
    }
    *errcode = MP_EINVAL;
    return MP_STREAM_ERROR;
}

static const mp_rom_map_elem_t hostfile_locals_dict_table[] = {
    { MP_ROM_QSTR(MP_QSTR_read), MP_ROM_PTR(&mp_stream_read_obj) },
    { MP_ROM_QSTR(MP_QSTR_readinto), MP_ROM_PTR(&mp_stream_readinto_obj) },
    { MP_ROM_QSTR(MP_QSTR_readline), MP_ROM_PTR(&mp_stream_unbuffered_readline_obj) },
    { MP_ROM_QSTR(MP_QSTR_close), MP_ROM_PTR(&mp_stream_close_obj) },
    { MP_ROM_QSTR(MP_QSTR___enter__), MP_ROM_PTR(&mp_identity_obj) },
    { MP_ROM_QSTR(MP_QSTR___exit__), MP_ROM_PTR(&mp_stream___exit___obj) },
};
static MP_DEFINE_CONST_DICT(hostfile_locals_dict, hostfile_locals_dict_table);

static const mp_stream_p_t hostfile_text_stream_p = {
    .read = hostfile_read,
    .ioctl = hostfile_ioctl,
    .is_text = true,
};

static const mp_stream_p_t hostfile_binary_stream_p = {
    .read = hostfile_read,
    .ioctl = hostfile_ioctl,
    .is_text = false,
};

static MP_DEFINE_CONST_OBJ_TYPE(
    mps2board_hosttext_type,
    MP_QSTR_HostTextFile,
    MP_TYPE_FLAG_ITER_IS_STREAM,
    protocol, &hostfile_text_stream_p,
    locals_dict, &hostfile_locals_dict
    );

static MP_DEFINE_CONST_OBJ_TYPE(
    mps2board_hostbinary_type,
    MP_QSTR_HostFile,
    MP_TYPE_FLAG_ITER_IS_STREAM,
    protocol, &hostfile_binary_stream_p,
    locals_dict, &hostfile_locals_dict
    );

// host_open(path, mode="r"): a host file opened for reading ("r" text, "rb" binary); OSError
// ENOENT when the host cannot open it. host_size(path): its length, or -1.
static int32_t host_handle(const char *path, size_t len, bool binary) {
    uint32_t args[3] = { (uint32_t)path, binary ? 1 : 0, len };
    return (int32_t)semihosting_call(SYS_OPEN, args);
}

static mp_obj_t mps2board_host_open(size_t n_args, const mp_obj_t *args) {
    size_t len;
    const char *path = mp_obj_str_get_data(args[0], &len);
    const char *mode = n_args > 1 ? mp_obj_str_get_str(args[1]) : "r";
    bool binary = strchr(mode, 'b') != NULL;
    if (strchr(mode, 'w') || strchr(mode, 'a') || strchr(mode, '+')) {
        mp_raise_OSError(MP_EROFS);
    }
    int32_t handle = host_handle(path, len, binary);
    if (handle < 0) {
        mp_raise_OSError(MP_ENOENT);
    }
    mps2board_hostfile_obj_t *self = mp_obj_malloc(mps2board_hostfile_obj_t,
        binary ? &mps2board_hostbinary_type : &mps2board_hosttext_type);
    self->handle = handle;
    self->pos = 0;
    self->len = 0;
    return MP_OBJ_FROM_PTR(self);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(mps2board_host_open_obj, 1, 2, mps2board_host_open);

static mp_obj_t mps2board_host_size(mp_obj_t path_in) {
    size_t len;
    const char *path = mp_obj_str_get_data(path_in, &len);
    int32_t handle = host_handle(path, len, true);
    if (handle < 0) {
        return MP_OBJ_NEW_SMALL_INT(-1);
    }
    uint32_t args[1] = { (uint32_t)handle };
    int32_t size = (int32_t)semihosting_call(SYS_FLEN, args);
    semihosting_call(SYS_CLOSE, args);
    return mp_obj_new_int(size);
}
static MP_DEFINE_CONST_FUN_OBJ_1(mps2board_host_size_obj, mps2board_host_size);

// ---- module ---------------------------------------------------------------------------------

static mp_obj_t mps2board_ramdisk(void) {
    return mp_obj_new_bytearray_by_ref(sizeof(ramdisk), ramdisk);
}
static MP_DEFINE_CONST_FUN_OBJ_0(mps2board_ramdisk_obj, mps2board_ramdisk);

static const mp_rom_map_elem_t mps2board_module_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_mps2board) },
    { MP_ROM_QSTR(MP_QSTR_UART), MP_ROM_PTR(&mps2board_uart_type) },
    { MP_ROM_QSTR(MP_QSTR_ramdisk), MP_ROM_PTR(&mps2board_ramdisk_obj) },
    { MP_ROM_QSTR(MP_QSTR_host_open), MP_ROM_PTR(&mps2board_host_open_obj) },
    { MP_ROM_QSTR(MP_QSTR_host_size), MP_ROM_PTR(&mps2board_host_size_obj) },
};
static MP_DEFINE_CONST_DICT(mps2board_module_globals, mps2board_module_globals_table);

const mp_obj_module_t mps2board_module = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&mps2board_module_globals,
};

MP_REGISTER_MODULE(MP_QSTR_mps2board, mps2board_module);
