// --tag-output: a rank's output, line by line, with "[rank] " in front, so lines of different
// ranks never interleave mid-line.
#pragma once

#include <string>
#include <string_view>

namespace wv::wvrun {

class LineTagger {
 public:
  LineTagger(int rank, int out_fd);
  // Writes every complete line in `data`; keeps an unfinished one for later.
  void feed(std::string_view data);
  // The unfinished last line, if any, with a newline added (the stream ended).
  void finish();

 private:
  void write_line(std::string_view line);
  std::string prefix_;
  int out_fd_;
  std::string partial_;
};

}  // namespace wv::wvrun
