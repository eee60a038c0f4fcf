# Warnings every wv target compiles with; WV_WERROR (on in CI) makes them fatal.
add_library(wv_warnings INTERFACE)
target_compile_options(wv_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wcast-align -Wimplicit-fallthrough
  -Wmissing-declarations $<$<BOOL:${WV_WERROR}>:-Werror>)
