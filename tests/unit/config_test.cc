#include "wv/config/config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "wv/config/definition.h"
#include "wv/config/names.h"
#include "wv/result.h"

namespace wv::config {
namespace {

namespace fs = std::filesystem;

// Each test gets its own directory, so files from one test never leak into another.
class ConfigTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::path(testing::TempDir()) / "wv_config_XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  // Writes `text` to `relative` under the test directory and returns its path.
  std::string write(const std::string& relative, std::string_view text) {
    fs::path path = dir_ / relative;
    fs::create_directories(path.parent_path());
    std::ofstream(path) << text;
    return path.string();
  }

  // Sources with the given environment and a config file holding `toml`.
  Sources with_file(std::string_view toml, std::vector<std::string> environment = {}) {
    environment.insert(environment.begin(), "WV_CONFIG=" + write("wv.toml", toml));
    return Sources{std::move(environment)};
  }

  fs::path dir_;
};

Sources env(std::initializer_list<std::string> variables) {
  return Sources{variables};
}

// The load must fail, and its message must contain every one of `parts`.
void expect_load_error(const Sources& sources, std::initializer_list<std::string_view> parts,
                       Errc code = Errc::kInvalidArgument) {
  Result<Config> config = Config::load(sources);
  ASSERT_FALSE(config.is_ok()) << "load unexpectedly succeeded";
  EXPECT_EQ(config.status().code(), code) << config.status().to_string();
  for (std::string_view part : parts) {
    EXPECT_NE(config.status().message().find(part), std::string::npos)
        << "'" << part << "' missing from: " << config.status().message();
  }
}

Config load_ok(const Sources& sources) {
  Result<Config> config = Config::load(sources);
  EXPECT_TRUE(config.is_ok()) << config.status().to_string();
  if (!config.is_ok()) std::abort();  // the test cannot go on; gtest already printed why
  return std::move(config).value();
}

TEST(StatusTest, OkAndErrorFormatting) {
  Status ok;
  EXPECT_TRUE(ok.is_ok());
  EXPECT_EQ(ok.message(), "");
  EXPECT_EQ(ok.to_string(), "ok");
  Status error(Errc::kNotFound, "no such device 'mlx9'");
  EXPECT_FALSE(error.is_ok());
  EXPECT_EQ(error.code(), Errc::kNotFound);
  EXPECT_EQ(error.message(), "no such device 'mlx9'");
  EXPECT_EQ(error.to_string(), "not found: no such device 'mlx9'");
  EXPECT_EQ(to_string(Errc::kIoError), "I/O error");
  EXPECT_TRUE(Status(Errc::kOk, "ignored").is_ok());
}

TEST_F(ConfigTest, DefaultsHaveDefaultOrigin) {
  Config config = load_ok(env({}));
  for (const Entry& entry : config.entries()) {
    EXPECT_EQ(entry.value, entry.definition->default_value) << entry.definition->name;
    EXPECT_EQ(entry.origin, Origin::kDefault) << entry.definition->name;
    EXPECT_EQ(entry.origin_detail, "") << entry.definition->name;
  }
  EXPECT_EQ(config.get_string(names::kProvider), "auto");
  EXPECT_EQ(config.get_string(names::kDevice), "");
  EXPECT_EQ(config.get_string(names::kTcpCrc), "off");
  EXPECT_EQ(config.get_size(names::kTcpSegmentSize), 65536u);
  EXPECT_EQ(config.get_int(names::kTcpReadDepth), 16);
  EXPECT_EQ(config.get_int(names::kConnectTimeoutMs), 10000);
  EXPECT_EQ(config.get_int(names::kRnrTimeoutMs), 2000);
}

TEST_F(ConfigTest, FileOverridesDefault) {
  Sources sources = with_file(
      "provider = \"tcp\"\n"
      "tcp_read_depth = 8\n"
      "tcp_segment_size = \"16K\"\n"
      "device = \"rxe0\"\n");
  std::string path = (dir_ / "wv.toml").string();
  Config config = load_ok(sources);
  EXPECT_EQ(config.get_string(names::kProvider), "tcp");
  EXPECT_EQ(config.get_int(names::kTcpReadDepth), 8);
  EXPECT_EQ(config.get_size(names::kTcpSegmentSize), 16384u);
  EXPECT_EQ(config.get_string(names::kDevice), "rxe0");
  const Entry& provider = config.entry(names::kProvider);
  EXPECT_EQ(provider.origin, Origin::kFile);
  EXPECT_EQ(provider.origin_detail, path + ": provider");
  EXPECT_EQ(config.entry(names::kLogLevel).origin, Origin::kDefault);
}

TEST_F(ConfigTest, FileAcceptsStringsForNumbers) {
  Config config = load_ok(with_file("tcp_read_depth = \"+32\"\n"));
  EXPECT_EQ(config.get_int(names::kTcpReadDepth), 32);
}

TEST_F(ConfigTest, EnvironmentOverridesFile) {
  Config config = load_ok(with_file("provider = \"tcp\"\ntcp_read_depth = 8\n",
                                    {"WV_PROVIDER=shm", "WV_LOG_LEVEL=debug"}));
  EXPECT_EQ(config.get_string(names::kProvider), "shm");
  EXPECT_EQ(config.entry(names::kProvider).origin, Origin::kEnvironment);
  EXPECT_EQ(config.entry(names::kProvider).origin_detail, "WV_PROVIDER");
  EXPECT_EQ(config.get_int(names::kTcpReadDepth), 8);
  EXPECT_EQ(config.entry(names::kTcpReadDepth).origin, Origin::kFile);
  EXPECT_EQ(config.get_string(names::kLogLevel), "debug");
}

TEST_F(ConfigTest, FirstEnvironmentEntryWinsLikeGetenv) {
  Config config = load_ok(env({"WV_PROVIDER=tcp", "WV_PROVIDER=shm"}));
  EXPECT_EQ(config.get_string(names::kProvider), "tcp");
}

TEST_F(ConfigTest, SetOverridesEnvironment) {
  Config config = load_ok(env({"WV_TCP_READ_DEPTH=4"}));
  ASSERT_TRUE(config.set(names::kTcpReadDepth, "64", "--tcp-read-depth").is_ok());
  EXPECT_EQ(config.get_int(names::kTcpReadDepth), 64);
  EXPECT_EQ(config.entry(names::kTcpReadDepth).origin, Origin::kOverride);
  EXPECT_EQ(config.entry(names::kTcpReadDepth).origin_detail, "--tcp-read-depth");
}

TEST_F(ConfigTest, SetErrorsNameParameterAndOriginAndKeepTheValue) {
  Config config = load_ok(env({"WV_TCP_READ_DEPTH=4"}));
  Status bad = config.set(names::kTcpReadDepth, "0", "--tcp-read-depth");
  EXPECT_EQ(bad.code(), Errc::kInvalidArgument);
  EXPECT_NE(bad.message().find("'tcp_read_depth'"), std::string::npos) << bad.message();
  EXPECT_NE(bad.message().find("--tcp-read-depth"), std::string::npos) << bad.message();
  EXPECT_NE(bad.message().find("between 1 and 1024"), std::string::npos) << bad.message();
  EXPECT_EQ(config.get_int(names::kTcpReadDepth), 4);
  EXPECT_EQ(config.entry(names::kTcpReadDepth).origin, Origin::kEnvironment);

  Status unknown = config.set("provder", "tcp", "--provder");
  EXPECT_EQ(unknown.code(), Errc::kNotFound);
  EXPECT_NE(unknown.message().find("'provder'"), std::string::npos) << unknown.message();
  EXPECT_NE(unknown.message().find("--provder"), std::string::npos) << unknown.message();
  EXPECT_NE(unknown.message().find("did you mean 'provider'"), std::string::npos)
      << unknown.message();
}

TEST_F(ConfigTest, MissingWvConfigFileIsAnError) {
  std::string path = (dir_ / "absent.toml").string();
  expect_load_error(env({"WV_CONFIG=" + path}), {path, "WV_CONFIG"}, Errc::kNotFound);
}

TEST_F(ConfigTest, WvConfigNamingADirectoryIsAnError) {
  expect_load_error(env({"WV_CONFIG=" + dir_.string()}), {dir_.string()}, Errc::kIoError);
}

TEST_F(ConfigTest, EmptyWvConfigMeansNoFile) {
  write("xdg/wv/wv.toml", "provider = \"tcp\"\n");
  Config config = load_ok(env({"WV_CONFIG=", "XDG_CONFIG_HOME=" + (dir_ / "xdg").string()}));
  EXPECT_EQ(config.get_string(names::kProvider), "auto");
}

TEST_F(ConfigTest, XdgConfigHomeIsUsedBeforeHome) {
  std::string xdg_file = write("xdg/wv/wv.toml", "provider = \"tcp\"\n");
  write("home/.config/wv/wv.toml", "provider = \"shm\"\n");
  Config config = load_ok(
      env({"HOME=" + (dir_ / "home").string(), "XDG_CONFIG_HOME=" + (dir_ / "xdg").string()}));
  EXPECT_EQ(config.get_string(names::kProvider), "tcp");
  EXPECT_EQ(config.entry(names::kProvider).origin_detail, xdg_file + ": provider");
}

TEST_F(ConfigTest, HomeConfigIsUsedWithoutXdg) {
  std::string home_file = write("home/.config/wv/wv.toml", "provider = \"shm\"\n");
  Config config = load_ok(env({"HOME=" + (dir_ / "home").string()}));
  EXPECT_EQ(config.get_string(names::kProvider), "shm");
  EXPECT_EQ(config.entry(names::kProvider).origin_detail, home_file + ": provider");
}

TEST_F(ConfigTest, MissingDefaultFileIsNotAnError) {
  Config config = load_ok(
      env({"HOME=" + (dir_ / "home").string(), "XDG_CONFIG_HOME=" + (dir_ / "xdg").string()}));
  EXPECT_EQ(config.entry(names::kProvider).origin, Origin::kDefault);
}

TEST_F(ConfigTest, UnknownKeyInFileNamesFileAndKey) {
  std::string path = (dir_ / "wv.toml").string();
  expect_load_error(with_file("provder = \"tcp\"\n"),
                    {path + ": provder", "unknown parameter", "did you mean 'provider'"},
                    Errc::kNotFound);
}

TEST_F(ConfigTest, NestedTableInFileNamesFileAndKey) {
  std::string path = (dir_ / "wv.toml").string();
  expect_load_error(with_file("[verbs]\nprovider = \"tcp\"\n"), {path, "'verbs'", "table"});
  expect_load_error(with_file("tcp.crc = \"off\"\n"), {path, "'tcp'", "table"});
}

TEST_F(ConfigTest, UnsupportedTomlTypesNameParameterAndFile) {
  std::string path = (dir_ / "wv.toml").string();
  expect_load_error(with_file("tcp_read_depth = 1.5\n"),
                    {"'tcp_read_depth'", path + ": tcp_read_depth", "floating-point"});
  expect_load_error(with_file("device = [\"rxe0\"]\n"), {"'device'", path, "array"});
}

TEST_F(ConfigTest, NativeTomlTypesAreCheckedLikeStrings) {
  std::string path = (dir_ / "wv.toml").string();
  expect_load_error(with_file("provider = 3\n"),
                    {"'provider'", path + ": provider", "'3' is not one of: auto, tcp"});
  expect_load_error(with_file("tcp_read_depth = true\n"), {"'tcp_read_depth'", "'true'"});
}

TEST_F(ConfigTest, TomlSyntaxErrorNamesFileAndLine) {
  std::string path = (dir_ / "wv.toml").string();
  expect_load_error(with_file("provider = \"tcp\"\n\ntcp_read_depth = = 4\n"), {path + ":3:"});
}

TEST_F(ConfigTest, UnknownEnvironmentVariableIsAnErrorWithSuggestion) {
  expect_load_error(env({"WV_PROVIDR=tcp"}),
                    {"unknown parameter 'providr'", "environment variable WV_PROVIDR",
                     "did you mean WV_PROVIDER?"},
                    Errc::kNotFound);
  expect_load_error(env({"WV_Provider=tcp"}), {"WV_Provider", "did you mean WV_PROVIDER?"},
                    Errc::kNotFound);
  expect_load_error(env({"WV_RANKK=1"}), {"WV_RANKK", "did you mean WV_RANK?"}, Errc::kNotFound);
}

TEST_F(ConfigTest, FarUnknownEnvironmentVariableHasNoSuggestion) {
  Result<Config> config = Config::load(env({"WV_COMPLETELY_BOGUS=1"}));
  ASSERT_FALSE(config.is_ok());
  EXPECT_NE(config.status().message().find("WV_COMPLETELY_BOGUS"), std::string::npos);
  EXPECT_EQ(config.status().message().find("did you mean"), std::string::npos)
      << config.status().message();
}

TEST_F(ConfigTest, NonWvVariablesAreIgnored) {
  load_ok(env({"PATH=/usr/bin", "wv_provider=bogus", "NO_EQUALS_SIGN", "XWV_PROVIDER=x"}));
}

TEST_F(ConfigTest, ReservedVariablesAreAccepted) {
  std::vector<std::string> environment;
  for (std::string_view variable : reserved_environment()) {
    std::string value = variable == "WV_CONFIG" ? write("empty.toml", "") : "1";
    environment.push_back(std::string(variable) + "=" + value);
  }
  ASSERT_EQ(environment.size(), 8u);
  Config config = load_ok(Sources{environment});
  for (const Entry& entry : config.entries()) EXPECT_EQ(entry.origin, Origin::kDefault);
}

struct BadValue {
  std::string_view parameter;
  std::string_view variable;
  std::string_view value;
  std::string_view expected;  // part of the message besides the parameter and the variable
};

TEST_F(ConfigTest, BadValuesNameParameterAndSource) {
  const BadValue kCases[] = {
      {names::kTcpReadDepth, "WV_TCP_READ_DEPTH", "eight", "'eight' is not a decimal integer"},
      {names::kTcpReadDepth, "WV_TCP_READ_DEPTH", "8.0", "'8.0' is not a decimal integer"},
      {names::kTcpReadDepth, "WV_TCP_READ_DEPTH", "", "'' is not a decimal integer"},
      {names::kTcpReadDepth, "WV_TCP_READ_DEPTH", " 8", "' 8' is not a decimal integer"},
      {names::kTcpReadDepth, "WV_TCP_READ_DEPTH", "+-8", "'+-8' is not a decimal integer"},
      {names::kTcpReadDepth, "WV_TCP_READ_DEPTH", "99999999999999999999", "64-bit"},
      {names::kTcpSegmentSize, "WV_TCP_SEGMENT_SIZE", "16KB", "'16KB' is not a size"},
      {names::kTcpSegmentSize, "WV_TCP_SEGMENT_SIZE", "-4096", "'-4096' is not a size"},
      {names::kTcpSegmentSize, "WV_TCP_SEGMENT_SIZE", "K", "'K' is not a size"},
      {names::kTcpSegmentSize, "WV_TCP_SEGMENT_SIZE", "17179869184G", "below 2^64"},
      {names::kProvider, "WV_PROVIDER", "verbs",
       "'verbs' is not one of: auto, tcp, shm, hybrid, ibverbs"},
      {names::kTcpCrc, "WV_TCP_CRC", "on", "'on' is not one of: off, request, require"},
  };
  for (const BadValue& bad : kCases) {
    SCOPED_TRACE(testing::Message() << bad.variable << "=" << bad.value);
    expect_load_error(env({std::string(bad.variable) + "=" + std::string(bad.value)}),
                      {"parameter '" + std::string(bad.parameter) + "'",
                       "environment variable " + std::string(bad.variable), bad.expected});
  }
}

TEST_F(ConfigTest, RangeViolationsNameTheRange) {
  expect_load_error(env({"WV_TCP_READ_DEPTH=0"}), {"'tcp_read_depth'", "between 1 and 1024"});
  expect_load_error(env({"WV_TCP_READ_DEPTH=1025"}), {"between 1 and 1024"});
  expect_load_error(env({"WV_CONNECT_TIMEOUT_MS=0"}), {"'connect_timeout_ms'", "at least 1"});
  expect_load_error(env({"WV_RNR_TIMEOUT_MS=-1"}), {"'rnr_timeout_ms'", "at least 0"});
  expect_load_error(env({"WV_TCP_PORT_BASE=65536"}), {"between 0 and 65535"});
  expect_load_error(env({"WV_TCP_SEGMENT_SIZE=1023"}),
                    {"'1023' is out of range", "between 1024 and 65536"});
  // The byte count is shown, which also pins down what each suffix multiplies by.
  expect_load_error(env({"WV_TCP_SEGMENT_SIZE=65537"}), {"'65537' is out of range"});
  expect_load_error(env({"WV_TCP_SEGMENT_SIZE=1M"}), {"'1M' (1048576) is out of range"});
  expect_load_error(env({"WV_TCP_SEGMENT_SIZE=2MiB"}), {"'2MiB' (2097152)"});
  expect_load_error(env({"WV_TCP_SEGMENT_SIZE=3G"}), {"'3G' (3221225472)"});
  expect_load_error(env({"WV_TCP_SEGMENT_SIZE=1GiB"}), {"'1GiB' (1073741824)"});
  expect_load_error(env({"WV_TCP_SEGMENT_SIZE=65K"}), {"'65K' (66560)"});
}

TEST_F(ConfigTest, SizeSuffixesAreBinary) {
  Config config = load_ok(env({}));
  const std::pair<std::string_view, uint64_t> kCases[] = {
      {"4096", 4096}, {"64K", 65536}, {"1KiB", 1024}, {"16k", 16384}, {"32kib", 32768},
  };
  for (const auto& [text, bytes] : kCases) {
    ASSERT_TRUE(config.set(names::kTcpSegmentSize, text, "test").is_ok()) << text;
    EXPECT_EQ(config.get_size(names::kTcpSegmentSize), bytes) << text;
    EXPECT_EQ(config.entry(names::kTcpSegmentSize).value, text);
  }
}

TEST_F(ConfigTest, IntegersAcceptASign) {
  Config config = load_ok(env({"WV_TCP_READ_DEPTH=+12", "WV_RNR_TIMEOUT_MS=-0"}));
  EXPECT_EQ(config.get_int(names::kTcpReadDepth), 12);
  EXPECT_EQ(config.get_int(names::kRnrTimeoutMs), 0);
}

TEST_F(ConfigTest, ChoicesIgnoreCaseButAreStoredAsDefined) {
  Config config = load_ok(env({"WV_LOG_LEVEL=DEBUG", "WV_PROVIDER=Tcp"}));
  EXPECT_EQ(config.get_string(names::kLogLevel), "debug");
  EXPECT_EQ(config.get_string(names::kProvider), "tcp");
}

// No parameter is a bool yet, so the syntax is checked against a definition made up here.
TEST(CheckValueTest, Bool) {
  const Definition kFlag{.name = "flag",
                         .type = Type::kBool,
                         .default_value = "false",
                         .description = "A test flag.",
                         .level = Level::kDeveloper};
  for (std::string_view good : {"true", "false", "TRUE", "1", "0", "yes", "No", "on", "OFF"}) {
    EXPECT_TRUE(check_value(kFlag, good).is_ok()) << good;
  }
  for (std::string_view bad : {"", "2", "y", "enabled", "true "}) {
    Status status = check_value(kFlag, bad);
    EXPECT_EQ(status.code(), Errc::kInvalidArgument) << bad;
    EXPECT_NE(status.message().find("is not a boolean"), std::string::npos) << status.message();
  }
}

// Without a max, a size is bounded by Definition::max's default, INT64_MAX, not by 2^64.
TEST(CheckValueTest, LargeSizes) {
  const Definition kSize{.name = "size",
                         .type = Type::kSize,
                         .default_value = "0",
                         .description = "A test size.",
                         .level = Level::kDeveloper};
  EXPECT_TRUE(check_value(kSize, "8589934591G").is_ok());
  EXPECT_TRUE(check_value(kSize, "9223372036854775807").is_ok());
  Status above = check_value(kSize, "8589934592G");
  EXPECT_NE(above.message().find("(9223372036854775808) is out of range"), std::string::npos)
      << above.to_string();
  Status overflow = check_value(kSize, "17179869184G");
  EXPECT_NE(overflow.message().find("is not a size below 2^64"), std::string::npos)
      << overflow.to_string();
}

TEST_F(ConfigTest, EveryDefaultIsValidForItsOwnType) {
  Config config = load_ok(env({}));
  for (const Definition& definition : definitions()) {
    SCOPED_TRACE(definition.name);
    Status status = check_value(definition, definition.default_value);
    EXPECT_TRUE(status.is_ok()) << status.to_string();
    EXPECT_TRUE(config.set(definition.name, definition.default_value, "test").is_ok());
    EXPECT_FALSE(definition.description.empty());
    EXPECT_EQ(definition.type == Type::kChoice, !definition.choices.empty());
    EXPECT_LE(definition.min, definition.max);
  }
}

TEST_F(ConfigTest, NamesAreLowerSnakeCaseAndUnique) {
  for (const Definition& definition : definitions()) {
    EXPECT_EQ(find_definition(definition.name), &definition) << definition.name;
    for (char c : definition.name) {
      EXPECT_TRUE((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') << definition.name;
    }
    EXPECT_EQ(environment_variable(definition.name).substr(0, 3), "WV_");
  }
  EXPECT_EQ(environment_variable("tcp_read_depth"), "WV_TCP_READ_DEPTH");
  EXPECT_EQ(find_definition("no_such_parameter"), nullptr);
}

TEST_F(ConfigTest, EntriesFollowDefinitionOrder) {
  Config config = load_ok(with_file("tcp_read_depth = 2\n", {"WV_PROVIDER=tcp"}));
  ASSERT_EQ(config.entries().size(), definitions().size());
  for (size_t i = 0; i < definitions().size(); ++i) {
    EXPECT_EQ(config.entries()[i].definition, &definitions()[i]);
    EXPECT_EQ(&config.entry(definitions()[i].name), &config.entries()[i]);
  }
}

TEST(NamesTest, EveryNameConstantIsDefined) {
  const std::string_view kAll[] = {
      names::kProvider,
      names::kDevice,
      names::kLogLevel,
      names::kTcpCrc,
      names::kTcpSegmentSize,
      names::kTcpReadDepth,
      names::kTcpPortBase,
      names::kShmCma,
      names::kShmRingSize,
      names::kConnectTimeoutMs,
      names::kRnrTimeoutMs,
      names::kProgressSpinUs,
      names::kTransportAddress,
      names::kTransportEagerLimit,
      names::kTransportInlineLimit,
      names::kTransportRendezvous,
      names::kTransportFragmentSize,
      names::kTransportZeroCopyMin,
      names::kTransportCredits,
      names::kTransportReceiveBuffers,
      names::kTransportSendBuffers,
      names::kTransportSendDepth,
      names::kTransportUnexpectedLimit,
      names::kTransportRegistrationCache,
      names::kTransportProgress,
      names::kTransportSpinUs,
      names::kTransportYieldUs,
      names::kTransportMailbox,
      names::kCollectivesTable,
      names::kCollectivesSharedMemory,
      names::kCollectivesPull,
      names::kCollectivesStreamCache,
      names::kTopologyFakeHosts,
      names::kTopologyFakeLayout,
      names::kTopologyFakeNic,
  };
  for (std::string_view name : kAll) EXPECT_NE(find_definition(name), nullptr) << name;
  // One constant per definition: a new parameter needs its constant too.
  EXPECT_EQ(std::size(kAll), definitions().size());
}

TEST(ToStringTest, EnumsHaveNames) {
  EXPECT_EQ(to_string(Type::kSize), "size");
  EXPECT_EQ(to_string(Level::kTuner), "tuner");
  EXPECT_EQ(to_string(Origin::kEnvironment), "environment");
  EXPECT_EQ(to_string(Origin::kOverride), "override");
}

TEST_F(ConfigTest, WrongTypeGetterIsAProgrammingError) {
  Config config = load_ok(env({}));
#ifdef NDEBUG
  EXPECT_EQ(config.get_int(names::kProvider), 0);
  EXPECT_EQ(config.get_size(names::kTcpReadDepth), 0u);
  EXPECT_FALSE(config.get_bool(names::kTcpReadDepth));
  EXPECT_EQ(config.get_string(names::kTcpReadDepth), "");
  EXPECT_EQ(config.get_int("no_such_parameter"), 0);
  EXPECT_EQ(config.entry("no_such_parameter").definition, nullptr);
#else
  EXPECT_DEATH((void)config.get_int(names::kProvider), "not an integer");
  EXPECT_DEATH((void)config.get_int("no_such_parameter"), "unknown parameter");
#endif
}

TEST(GlobalTest, LoadsOnce) {
  const Result<Config>* first = &global();
  EXPECT_EQ(first, &global());
}

}  // namespace
}  // namespace wv::config
