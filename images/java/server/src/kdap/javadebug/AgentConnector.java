package kdap.javadebug;

import java.io.IOException;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import com.sun.jdi.Bootstrap;
import com.sun.jdi.VirtualMachine;
import com.sun.jdi.connect.AttachingConnector;
import com.sun.jdi.connect.Connector;
import com.sun.jdi.connect.Transport;
import com.sun.jdi.connect.spi.Connection;

// AgentConnector is the JDI connector java-debug's attach uses: whatever host
// and port the attach request names, it reaches the JVM through the kdap
// agent's Unix socket, which only processes of the debugger container can
// open, and hands JDI the JDWP connection.
final class AgentConnector implements AttachingConnector {
    private final String socket;

    AgentConnector(String socket) {
        this.socket = socket;
    }

    @Override
    public VirtualMachine attach(Map<String, ? extends Connector.Argument> arguments) throws IOException {
        SocketChannel ch = SocketChannel.open(UnixDomainSocketAddress.of(socket));
        byte[] hello = "JDWP-Handshake".getBytes(StandardCharsets.US_ASCII);
        writeFully(ch, ByteBuffer.wrap(hello));
        ByteBuffer answer = ByteBuffer.allocate(hello.length);
        readFully(ch, answer);
        if (!java.util.Arrays.equals(answer.array(), hello)) {
            ch.close();
            throw new IOException("the kdap agent did not complete the JDWP handshake: "
                    + new String(answer.array(), StandardCharsets.US_ASCII).trim());
        }
        return Bootstrap.virtualMachineManager().createVirtualMachine(new PacketConnection(ch));
    }

    @Override
    public Map<String, Connector.Argument> defaultArguments() {
        Map<String, Connector.Argument> args = new LinkedHashMap<>();
        for (String name : List.of("hostname", "port", "timeout")) {
            args.put(name, new StringArgument(name));
        }
        return args;
    }

    @Override
    public String name() {
        return "kdap.AgentAttach";
    }

    @Override
    public String description() {
        return "Attaches to the JVM through the kdap agent's socket";
    }

    @Override
    public Transport transport() {
        return () -> "kdap-agent";
    }

    static void writeFully(SocketChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            ch.write(b);
        }
    }

    static void readFully(SocketChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            if (ch.read(b) < 0) {
                throw new IOException("the kdap agent closed the JDWP connection");
            }
        }
    }

    // PacketConnection frames JDWP packets (a 4-byte big-endian length that
    // counts the whole packet) on the agent's socket.
    static final class PacketConnection extends Connection {
        private final SocketChannel ch;
        private final Object readLock = new Object(), writeLock = new Object();

        PacketConnection(SocketChannel ch) {
            this.ch = ch;
        }

        @Override
        public byte[] readPacket() throws IOException {
            synchronized (readLock) {
                ByteBuffer len = ByteBuffer.allocate(4);
                try {
                    readFully(ch, len);
                } catch (IOException e) {
                    return new byte[0]; // end of stream, as JDI expects it
                }
                int n = len.getInt(0);
                if (n < 11) {
                    throw new IOException("malformed JDWP packet of " + n + " bytes");
                }
                ByteBuffer packet = ByteBuffer.allocate(n);
                packet.putInt(n);
                readFully(ch, packet);
                return packet.array();
            }
        }

        @Override
        public void writePacket(byte[] packet) throws IOException {
            synchronized (writeLock) {
                writeFully(ch, ByteBuffer.wrap(packet));
            }
        }

        @Override
        public void close() throws IOException {
            ch.close();
        }

        @Override
        public boolean isOpen() {
            return ch.isOpen();
        }
    }

    // StringArgument holds the host, port and timeout java-debug sets (they
    // are not needed: the agent knows where the JVM is).
    static final class StringArgument implements Connector.StringArgument {
        private final String name;
        private String value = "";

        StringArgument(String name) {
            this.name = name;
        }

        @Override
        public String name() {
            return name;
        }

        @Override
        public String label() {
            return name;
        }

        @Override
        public String description() {
            return name;
        }

        @Override
        public String value() {
            return value;
        }

        @Override
        public void setValue(String value) {
            this.value = value;
        }

        @Override
        public boolean isValid(String value) {
            return true;
        }

        @Override
        public boolean mustSpecify() {
            return false;
        }

        @Override
        public Object clone() {
            StringArgument a = new StringArgument(name);
            a.value = value;
            return a;
        }
    }
}
