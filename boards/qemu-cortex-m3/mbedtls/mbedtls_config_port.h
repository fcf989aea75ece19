// mbedTLS configuration of the emulated Cortex-M3 (the qemu port has none): bare metal, heap from
// MicroPython (m_tracked_calloc), time from mps2board.c.
#ifndef MICROAGENT_MBEDTLS_CONFIG_PORT_H
#define MICROAGENT_MBEDTLS_CONFIG_PORT_H

#define MICROPY_MBEDTLS_CONFIG_BARE_METAL (1)
// The NIST curve arithmetic ESP-IDF's mbedTLS enables by default: the TLS key exchange, one
// mbedTLS call the application's asyncio loop waits for, takes about a third of the time.
#define MBEDTLS_ECP_NIST_OPTIM

#include <stdint.h>
#include <time.h>
time_t mps2board_mbedtls_time(time_t *timer);
#define MBEDTLS_PLATFORM_TIME_MACRO mps2board_mbedtls_time
#define MBEDTLS_PLATFORM_MS_TIME_ALT

#include "extmod/mbedtls/mbedtls_config_common.h"

#endif
