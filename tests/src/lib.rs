//! chatbox-tests: black-box integration tests of the real binary on loopback (arrive with the chat-path issue).
