// The transport's message headers (transport/src/wire_format.h): the short forms small sends
// use, and the receive check that keeps malformed messages from the peer out of the engine.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "wire_format.h"

namespace wv::transport::wire {
namespace {

constexpr size_t kEagerLimit = 8192;

// A message as the sender puts it on the wire: the header's prefix, then `payload` bytes.
std::vector<std::byte> message(Header header, size_t payload, bool allow_short = true) {
  const size_t bytes = allow_short ? shorten(header) : sizeof(Header);
  std::vector<std::byte> out(bytes + payload, std::byte{0x5a});
  std::memcpy(out.data(), &header, bytes);
  return out;
}

TEST(TransportWireTest, ActiveMessagesAndStandardEagerSendsGoShort) {
  Header active{};
  active.type = Type::kActive;
  EXPECT_EQ(shorten(active), kShortActiveBytes);
  EXPECT_NE(active.flags & kShort, 0);
  Header eager{};
  eager.type = Type::kEager;
  EXPECT_EQ(shorten(eager), kShortEagerBytes);
  Header synchronous{};
  synchronous.type = Type::kEager;
  synchronous.flags = kSynchronous;  // its acknowledgement names the cookie
  EXPECT_EQ(shorten(synchronous), sizeof(Header));
  EXPECT_EQ(synchronous.flags & kShort, 0);
  for (Type type :
       {Type::kRendezvous, Type::kCredit, Type::kSyncAck, Type::kFinish, Type::kReadyToReceive}) {
    Header other{};
    other.type = type;
    EXPECT_EQ(shorten(other), sizeof(Header)) << static_cast<int>(type);
  }
}

TEST(TransportWireTest, ShortHeadersDecodeToTheFieldsTheySent) {
  Header active{};
  active.type = Type::kActive;
  active.am_id = 7;
  active.credits = 3;
  active.am_header_length = 5;
  active.payload_length = 13;
  const auto sent = message(active, 13);
  Header got{};
  ASSERT_EQ(decode(sent, kEagerLimit, &got), kShortActiveBytes) << check(sent, kEagerLimit);
  EXPECT_EQ(got.type, Type::kActive);
  EXPECT_EQ(got.am_id, 7);
  EXPECT_EQ(got.credits, 3);
  EXPECT_EQ(got.am_header_length, 5);
  EXPECT_EQ(got.payload_length, 13u);  // from the bytes received
  EXPECT_EQ(got.cookie, 0u);

  Header eager{};
  eager.type = Type::kEager;
  eager.tag = 0x0123456789abcdefull;
  eager.cookie = 99;  // not carried: nothing answers a standard send
  eager.payload_length = 8;
  const auto sent_eager = message(eager, 8);
  ASSERT_EQ(decode(sent_eager, kEagerLimit, &got), kShortEagerBytes);
  EXPECT_EQ(got.tag, 0x0123456789abcdefull);
  EXPECT_EQ(got.payload_length, 8u);
  EXPECT_EQ(got.cookie, 0u);
  EXPECT_TRUE(check(sent_eager, kEagerLimit).empty());
}

TEST(TransportWireTest, FullHeadersStillDecode) {
  Header eager{};
  eager.type = Type::kEager;
  eager.flags = kSynchronous;
  eager.tag = 42;
  eager.cookie = 77;
  eager.payload_length = 100;
  const auto sent = message(eager, 100);
  Header got{};
  ASSERT_EQ(decode(sent, kEagerLimit, &got), sizeof(Header));
  EXPECT_EQ(got.cookie, 77u);
  EXPECT_EQ(got.tag, 42u);
  Header finish{};
  finish.type = Type::kFinish;
  finish.cookie = 5;
  EXPECT_EQ(decode(message(finish, 0), kEagerLimit, &got), sizeof(Header));
  Header ready{};
  ready.type = Type::kReadyToReceive;
  EXPECT_EQ(decode(message(ready, sizeof(ReadyBody)), kEagerLimit, &got), sizeof(Header));
}

TEST(TransportWireTest, MalformedMessagesAreRefusedWithAReason) {
  Header got{};
  const auto refused = [&](const std::vector<std::byte>& bytes, const char* reason) {
    EXPECT_EQ(decode(bytes, kEagerLimit, &got), 0u) << reason;
    EXPECT_NE(check(bytes, kEagerLimit).find(reason), std::string::npos)
        << check(bytes, kEagerLimit);
  };
  refused(std::vector<std::byte>(7), "shorter than its header");
  Header eager{};
  eager.type = Type::kEager;
  // A short eager header cut before its tag.
  auto cut = message(eager, 0);
  cut.resize(kShortActiveBytes + 4);
  refused(cut, "shorter than its header");
  // A short form the type does not have: a synchronous send, a rendezvous.
  Header synchronous{};
  synchronous.type = Type::kEager;
  synchronous.flags = kSynchronous | kShort;
  refused(message(synchronous, 8, false), "has no short header");
  Header rendezvous{};
  rendezvous.type = Type::kRendezvous;
  rendezvous.flags = kShort;
  refused(message(rendezvous, sizeof(RendezvousBody), false), "has no short header");
  // Lengths: a full eager header that disagrees with what arrived, a payload past the limit.
  Header lying{};
  lying.type = Type::kEager;
  lying.payload_length = 10;
  refused(message(lying, 9, false), "does not match");
  refused(message(eager, kEagerLimit + 1), "exceeds the eager limit");
  Header active{};
  active.type = Type::kActive;
  active.am_header_length = 9;
  refused(message(active, 8), "active message lengths");
  Header body{};
  body.type = Type::kFinish;
  refused(message(body, 1), "carries 1 bytes");
  Header unknown{};
  unknown.type = static_cast<Type>(99);
  refused(message(unknown, 0), "unknown message type");
}

}  // namespace
}  // namespace wv::transport::wire
