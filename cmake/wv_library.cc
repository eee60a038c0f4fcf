// libwv.so is the layers' static libraries linked whole (cmake/WvPackage.cmake); a CMake
// library target needs at least one source of its own, and this is it. It records the version
// the library was built as, for `strings libwv.so | grep wv-version`.
extern "C" {
[[gnu::used]] const char wv_library_version[] = "wv-version " WV_VERSION;
}
