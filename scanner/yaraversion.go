package scanner

// The cgo directives mirror go-yara's, so build tags that select a static
// or pkg-config-less libyara work the same here.

/*
#cgo !yara_no_pkg_config,!yara_static  pkg-config: yara
#cgo !yara_no_pkg_config,yara_static   pkg-config: --static yara
#cgo yara_no_pkg_config                LDFLAGS:    -lyara -lm
#include <yara.h>
static const char *pullgate_yara_version(void) { return YR_VERSION; }
*/
import "C"

// yaraVersion is the libyara version the scanner was built against; it
// is part of the ruleset id because a new engine may match differently.
var yaraVersion = C.GoString(C.pullgate_yara_version())
