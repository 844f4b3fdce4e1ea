/* Must not compile with runtime's include path: cache_internal.h is private to imaged/. */
#include "imaged/cache_internal.h"
