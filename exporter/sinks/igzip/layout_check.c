/*
 * Compiled by build.rs against the system's <isa-l/igzip_lib.h>: the build
 * fails here, with a clear message, when the installed ISA-L's stream
 * struct is not the layout the Rust bindings (isal-sys, pinned) describe.
 * A mismatch would otherwise let the library write past the Rust-side
 * allocation. Numbers: the bindings' sizes and offsets (isal-sys 0.5.3).
 */
#include <stddef.h>
#include <isa-l/igzip_lib.h>

_Static_assert(sizeof(struct isal_zstream) == 82384,
	       "isal_zstream size differs from the isal-sys bindings");
_Static_assert(offsetof(struct isal_zstream, level_buf) == 48,
	       "isal_zstream.level_buf offset differs from the isal-sys bindings");
_Static_assert(offsetof(struct isal_zstream, gzip_flag) == 60,
	       "isal_zstream.gzip_flag offset differs from the isal-sys bindings");
_Static_assert(offsetof(struct isal_zstream, internal_state) == 64,
	       "isal_zstream.internal_state offset differs from the isal-sys bindings");
_Static_assert(ISAL_DEF_LVL1_DEFAULT == 282624,
	       "ISAL_DEF_LVL1_DEFAULT differs from the isal-sys bindings");

/* Something to compile into the (otherwise unused) check library. */
int flowscribe_igzip_layout_checked(void)
{
	return 1;
}
