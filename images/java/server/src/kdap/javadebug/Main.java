// kdap's Java debug server: Microsoft's java-debug core (the engine of VS
// Code's Java debugger) behind a DAP socket, without Eclipse JDT. The kdap
// agent runs it in the debugger container next to the target JVM and hands
// it the JVM's JDWP connection over a Unix socket (AgentConnector); this
// program serves one DAP session at a time and, when a session's connection
// ends however it ends, lets go of the JVM (java-debug itself keeps the JDWP
// connection — and a suspended thread — when its DAP socket drops).
//
// Usage: java -cp … kdap.javadebug.Main SOCKET|PORT   (serves on the Unix
// socket at path SOCKET — the agent gives one in a directory only it may
// enter — or on 127.0.0.1:PORT, and prints "kdap java-debug listening at
// SOCKET" or "… at 127.0.0.1:PORT" once it serves; KDAP_JDWP_SOCKET names
// the agent's socket)
package kdap.javadebug;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.util.HashMap;
import java.util.Map;
import java.util.logging.Level;
import java.util.logging.Logger;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.microsoft.java.debug.core.Configuration;
import com.microsoft.java.debug.core.adapter.ICompletionsProvider;
import com.microsoft.java.debug.core.adapter.IEvaluationProvider;
import com.microsoft.java.debug.core.adapter.IHotCodeReplaceProvider;
import com.microsoft.java.debug.core.adapter.ISourceLookUpProvider;
import com.microsoft.java.debug.core.adapter.IVirtualMachineManagerProvider;
import com.microsoft.java.debug.core.adapter.ProtocolServer;
import com.microsoft.java.debug.core.adapter.ProviderContext;
import com.microsoft.java.debug.core.protocol.Events;
import com.microsoft.java.debug.core.protocol.Messages;

public final class Main {
    public static void main(String[] args) throws IOException {
        String listen = args.length > 0 ? args[0] : "0";
        String socket = System.getenv("KDAP_JDWP_SOCKET");
        if (socket == null || socket.isEmpty()) {
            System.err.println("kdap java-debug: KDAP_JDWP_SOCKET is not set");
            System.exit(2);
        }
        Logger.getLogger("").setLevel(Level.WARNING); // java-debug logs usage data at INFO
        Logger.getLogger(Configuration.LOGGER_NAME).setLevel(Level.WARNING);
        if (listen.startsWith("/")) {
            try (ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
                server.bind(UnixDomainSocketAddress.of(listen), 1);
                System.out.println("kdap java-debug listening at " + listen);
                System.out.flush();
                while (true) {
                    SocketChannel client = server.accept();
                    serve(new ChannelInput(client), new ChannelOutput(client), client, socket); // one session at a time: JDWP takes one client
                }
            }
        }
        try (ServerSocket server = new ServerSocket(Integer.parseInt(listen), 1, InetAddress.getLoopbackAddress())) {
            System.out.println("kdap java-debug listening at 127.0.0.1:" + server.getLocalPort());
            System.out.flush();
            while (true) {
                Socket client = server.accept();
                serve(client.getInputStream(), client.getOutputStream(), client, socket);
            }
        }
    }

    // serve runs one DAP session on a client's streams; afterwards the JVM
    // is let go and the client closed.
    static void serve(InputStream in, OutputStream out, java.io.Closeable client, String jdwpSocket) {
        VmManager vms = new VmManager(new AgentConnector(jdwpSocket));
        SourceLookup sources = new SourceLookup();
        ProviderContext providers = new ProviderContext();
        providers.registerProvider(IVirtualMachineManagerProvider.class, (IVirtualMachineManagerProvider) () -> vms);
        providers.registerProvider(ISourceLookUpProvider.class, sources);
        providers.registerProvider(IEvaluationProvider.class, new Evaluator());
        providers.registerProvider(IHotCodeReplaceProvider.class, new NoHotCodeReplace());
        providers.registerProvider(ICompletionsProvider.class, (ICompletionsProvider) (frame, text, line, column) -> java.util.List.of());
        try {
            new Session(in, out, providers, sources).run();
        } catch (RuntimeException e) {
            System.err.println("kdap java-debug: session: " + e);
        } finally {
            vms.release();
            try {
                client.close();
            } catch (IOException e) {
                // already closed
            }
        }
    }

    // ChannelInput reads a socket channel. Not Channels.newInputStream:
    // its streams share the channel's blocking lock, so a read waiting for
    // the IDE would hold up every write to it.
    static final class ChannelInput extends InputStream {
        private final SocketChannel ch;

        ChannelInput(SocketChannel ch) {
            this.ch = ch;
        }

        @Override
        public int read() throws IOException {
            byte[] b = new byte[1];
            return read(b, 0, 1) < 0 ? -1 : b[0] & 0xff;
        }

        @Override
        public int read(byte[] b, int off, int len) throws IOException {
            if (len == 0) {
                return 0;
            }
            return ch.read(ByteBuffer.wrap(b, off, len));
        }
    }

    // ChannelOutput writes a socket channel (see ChannelInput).
    static final class ChannelOutput extends OutputStream {
        private final SocketChannel ch;

        ChannelOutput(SocketChannel ch) {
            this.ch = ch;
        }

        @Override
        public void write(int b) throws IOException {
            write(new byte[] {(byte) b}, 0, 1);
        }

        @Override
        public void write(byte[] b, int off, int len) throws IOException {
            ByteBuffer buf = ByteBuffer.wrap(b, off, len);
            while (buf.hasRemaining()) {
                ch.write(buf);
            }
        }
    }

    // Session is java-debug's protocol server, which hands the IDE's source
    // files that kdap lists in the attach request (kdapSourceFiles) to the
    // source lookup, keeps java-debug's telemetry events to itself, and
    // makes a changed hit count take effect: java-debug keeps the JDI
    // request of a breakpoint that stays on its line and never applies the
    // new count to it, so such a breakpoint is first removed by a request
    // of the server's own (negative seq, its response dropped). Requests
    // are dispatched one at a time, so the removal is done before the
    // IDE's request runs.
    static final class Session extends ProtocolServer {
        private final SourceLookup sources;
        private final Map<String, Map<Integer, String>> hitConditions = new HashMap<>(); // source → line → hitCondition last set
        private int ownSeq;

        Session(InputStream in, OutputStream out, ProviderContext providers, SourceLookup sources) {
            super(in, out, providers);
            this.sources = sources;
        }

        @Override
        protected void dispatchRequest(Messages.Request request) {
            if ("attach".equals(request.command) && request.arguments != null) {
                sources.setKnownFiles(request.arguments.get("kdapSourceFiles"));
            }
            if ("setBreakpoints".equals(request.command) && request.arguments != null) {
                removeChangedHitCounts(request.arguments);
            }
            super.dispatchRequest(request);
        }

        private void removeChangedHitCounts(JsonObject args) {
            JsonObject source = args.getAsJsonObject("source");
            JsonElement path = source == null ? null : source.get("path");
            if (path == null || !args.has("breakpoints")) {
                return;
            }
            Map<Integer, String> now = new HashMap<>();
            JsonArray kept = new JsonArray();
            Map<Integer, String> before = hitConditions.getOrDefault(path.getAsString(), Map.of());
            boolean changed = false;
            for (JsonElement e : args.getAsJsonArray("breakpoints")) {
                JsonObject bp = e.getAsJsonObject();
                int line = bp.get("line").getAsInt();
                String hit = bp.has("hitCondition") ? bp.get("hitCondition").getAsString() : "";
                now.put(line, hit);
                if (before.containsKey(line) && !before.get(line).equals(hit)) {
                    changed = true;
                } else {
                    kept.add(bp);
                }
            }
            hitConditions.put(path.getAsString(), now);
            if (changed) {
                JsonObject removal = args.deepCopy();
                removal.add("breakpoints", kept);
                super.dispatchRequest(new Messages.Request(--ownSeq, "setBreakpoints", removal));
            }
        }

        @Override
        public void sendResponse(Messages.Response response) {
            if (response.request_seq >= 0) { // not the answer to a request of the server's own
                super.sendResponse(response);
            }
        }

        @Override
        public void sendEvent(Events.DebugEvent event) {
            if (!(event instanceof Events.TelemetryEvent)) {
                super.sendEvent(event);
            }
        }
    }
}
