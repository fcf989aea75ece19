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

// The output record buffer: 1 KB of plaintext a record (MicroPython's default is 4 KB). Outgoing
// records only carry our ClientHello and key exchange (a few hundred bytes: SAS authentication
// sends no client certificate) and MQTT packets, which mbedTLS splits into records of this size
// (a 4 KB message goes as five). Saves 3 KB of the heap the TLS session takes. X.509 device
// authentication (not implemented here) would need room for the client certificate chain.
// The input buffer stays 16 KB: IoT Hub may send full-size TLS records (its certificate chain, a
// twin document, a cloud-to-device message) and a smaller buffer fails the connection on one.
#undef MBEDTLS_SSL_OUT_CONTENT_LEN
#define MBEDTLS_SSL_OUT_CONTENT_LEN (1024)

#endif
