/* Must compile with runtime's include path: imaged/cache.h is a door of imaged/, below
 * runtime/. The control probe: the include path the other probes fail with does work. */
#include "imaged/cache.h"

typedef int probe_translation_unit_is_not_empty;
