// Package scanner decides whether container image content carries
// cryptominers or other malware. It compiles YARA rules (an embedded
// default ruleset plus operator files), runs them in a bounded pool of
// workers, walks layer blobs as a stream (plain tar, or gzip, bzip2, xz
// or zstd, detected as Docker Engine and containerd detect them), scans
// other blobs (artifacts) as a tar when they are one and as raw bytes
// otherwise, and scans image config blobs. Inside a layer it unpacks what
// the host may run unpacked: UPX-packed executables, archives found by
// magic bytes (tar, gzip, xz, bzip2, zstd, zip and jar) and base64
// payloads in scripts, nested up to Limits.MaxArchiveDepth, each scanned
// under the path of the file it came from ("/opt/a.tar.gz!x/xmrig").
// Archives of any size are unpacked with bounded memory: a tar or a
// compressed stream as it is read, a zip through a temporary spool file
// (in $TMPDIR, removed from its folder as soon as it is created, so the
// scanner writes no file that outlives it).
//
// The pool is bounded for the Scanner's whole life: New starts exactly
// Options.Workers goroutines and Close stops them; Reload changes the
// rules in place and never starts another. Each scan runs under the
// ruleset current when it started, and its Result names that ruleset
// (Result.RulesetID), so a caller records a verdict under the rules that
// produced it, never under newer ones. Workers move to new rules between
// jobs, and replaced rules are freed once no scan, job or worker uses
// them. The ruleset id covers every byte the compiler read: the scanner
// reads the files rules `include` itself (relative to the including file)
// and hashes them with the rule files and the known-bad list; RulePaths
// names every file a reload must watch. It must never let libyara read a
// file behind its back.
//
// scanner is content analysis only: it never touches the network, never
// talks to Redis or any store, and never imports other pullgate packages.
// Callers hand it bytes and get back findings; what to do about them is
// the caller's decision, except for Result.Blocking, the one place that
// says which findings refuse an image.
//
// Every limit fails closed: a layer that is too big, has too many files,
// takes too long or cannot be decoded produces an error (wrapping ErrLimit
// or ErrCorrupt), never a clean Result.
//
// The default rules live in rules/*.yar and are embedded. They are
// compiled, in name order, into one namespace together with the
// operator's files, so operator rules may use the private helper rules
// (such as ScriptLike) and rule names must be unique. Each rule carries
// meta category, severity and description; an operator rule that leaves
// them out is taken as category "custom", severity "high". Indicator
// strings in the default rules are written with \x escapes so that the
// pullgate binary, which embeds them, does not match its own rules.
//
// Rules may use these externals, set per file: filepath ("/usr/bin/x" or
// "config:Cmd"; for an archive member, its path as if unpacked at the
// root), filename ("x"), extension ("sh", lower case, no dot),
// executable (ELF/Mach-O/PE magic or an exec mode bit) and context
// ("layer" or "config"). Scans run in YARA's fast mode, so rules must not
// depend on string counts (#s) or on matches after the first (@s[2]).
package scanner
