/* Must not compile with runtime's include path: oci_private.h is private to oci/. */
#include "oci/oci_private.h"
