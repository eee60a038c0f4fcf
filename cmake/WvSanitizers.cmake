# One sanitizer flavour per build tree: ASan and UBSan together, or TSan alone (they cannot mix).
if(WV_SANITIZE STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=undefined
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
elseif(WV_SANITIZE STREQUAL "thread")
  # GCC warns that TSan does not model std::atomic_thread_fence; the tests use fences on
  # purpose, and TSan still checks everything else.
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer -Wno-tsan)
  add_link_options(-fsanitize=thread)
elseif(NOT WV_SANITIZE STREQUAL "")
  message(FATAL_ERROR "WV_SANITIZE must be empty, 'address' or 'thread', not '${WV_SANITIZE}'")
endif()
