#ifndef CARCHIVE_SHIM_H
#define CARCHIVE_SHIM_H
/* libarchive's reading side: tar (ustar, GNU, pax) behind any of the
 * compression filters it detects from the data. */
#include <archive.h>
#include <archive_entry.h>

/* archive_set_error is variadic: Swift calls this instead. */
static inline void cfs_archive_set_message(struct archive *a, int code, const char *message) {
    archive_set_error(a, code, "%s", message);
}
#endif
