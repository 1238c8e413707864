#ifndef CARCHIVE_SHIM_H
#define CARCHIVE_SHIM_H
/* libarchive's reading side: tar (ustar, GNU, pax) behind any of the
 * compression filters it detects from the data. */
#include <archive.h>
#include <archive_entry.h>
#endif
