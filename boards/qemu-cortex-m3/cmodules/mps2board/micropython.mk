# User C module of the emulated board (docs/targets.md): the second UART, the RAM disk, the clock.
MPS2BOARD_DIR := $(USERMOD_DIR)
SRC_USERMOD_C += $(MPS2BOARD_DIR)/mps2board.c
CFLAGS_USERMOD += -I$(MPS2BOARD_DIR)
# gmtime() for mbedTLS's certificate dates (the qemu port does not build timeutils otherwise).
SRC_USERMOD_LIB_C += shared/timeutils/timeutils.c
