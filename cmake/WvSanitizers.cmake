# One sanitizer flavour per build tree: ASan and UBSan together, or TSan alone (they cannot mix).
if(WV_SANITIZE STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=undefined
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
elseif(WV_SANITIZE STREQUAL "thread")
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
elseif(NOT WV_SANITIZE STREQUAL "")
  message(FATAL_ERROR "WV_SANITIZE must be empty, 'address' or 'thread', not '${WV_SANITIZE}'")
endif()
