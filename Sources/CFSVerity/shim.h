#ifndef CFSVERITY_SHIM_H
#define CFSVERITY_SHIM_H
#include <libfsverity.h>
#endif
