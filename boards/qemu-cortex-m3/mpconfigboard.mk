# MicroPython board definition (an out-of-tree BOARD_DIR for ports/qemu) of the microagent's
# emulated board: the MPS2-AN385 Cortex-M3 image with TLS, asyncio, a RAM filesystem and a second
# UART for the hub link. Built by tools/build_firmware.py (`make firmware`); docs/targets.md.
QEMU_ARCH = arm
QEMU_MACHINE = mps2-an385

CFLAGS += -mthumb -mcpu=cortex-m3 -mfloat-abi=soft
CFLAGS += -DQEMU_SOC_MPS2
CFLAGS += -DMICROPY_HW_MCU_NAME='"Cortex-M3"'

LDSCRIPT = mcu/arm/mps2.ld

SRC_BOARD_O = shared/runtime/gchelper_native.o shared/runtime/gchelper_thumb2.o

MPY_CROSS_FLAGS += -march=armv7m

# Our mpconfigport.h (which includes the port's) and mbedtls/mbedtls_config_port.h come first.
INC += -I$(BOARD_DIR)

MICROPY_PY_SSL = 1
MICROPY_SSL_MBEDTLS = 1
MICROPY_VFS_LFS2 = 1
