#ifndef CCRYPTO_SHIM_H
#define CCRYPTO_SHIM_H
/* The one-shot SHA256() is the cheapest call per 4 KiB Merkle block. */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <openssl/sha.h>
#endif
