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

import yara "github.com/hillu/go-yara/v4"

// noTryCatch is libyara's SCAN_FLAGS_NO_TRYCATCH, which go-yara does not
// name. Without it, every scan swaps the process's SIGSEGV and SIGBUS
// handlers for libyara's and back (four sigaction calls and a global
// lock), to survive a memory-mapped file shrinking under the scan. The
// scanner only ever scans Go memory, so it has nothing to survive; and
// while libyara's handlers are in place, a nil dereference on any other
// thread of this Go process (one a handler recovers from, say) is caught
// by libyara's handler instead of Go's, and the process crashes.
// TestScanLeavesGoSignalHandling shows it.
const noTryCatch yara.ScanFlags = C.SCAN_FLAGS_NO_TRYCATCH

// yaraVersion is the libyara version the scanner was built against; it
// is part of the ruleset id because a new engine may match differently.
var yaraVersion = C.GoString(C.pullgate_yara_version())
