/* Must not compile with runtime's include path: server/ is above runtime/. */
#include "server/server.h"
